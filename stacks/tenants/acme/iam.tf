resource "aws_iam_user" "tenant" {
  name = "acme"
  tags = {
    cluster      = "premium-acme"
    cost_center  = "cc-1042"
    "managed-by" = "tenantctl"
    tenant       = "acme"
    tier         = "premium"
  }
}

# The tenant's user may assume this role only from its allowed source addresses.
resource "aws_iam_role" "access" {
  name        = "acme-access"
  description = "Database access for tenant acme"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid    = "AssumeFromAllowedSourceIps"
        Effect = "Allow"
        Action = "sts:AssumeRole"
        Principal = {
          AWS = aws_iam_user.tenant.arn
        }
        Condition = {
          IpAddress = {
            "aws:SourceIp" = ["198.51.100.10/32", "127.0.0.1/32"]
          }
        }
      },
    ]
  })
  tags = {
    cluster      = "premium-acme"
    cost_center  = "cc-1042"
    "managed-by" = "tenantctl"
    tenant       = "acme"
    tier         = "premium"
  }
}
