resource "aws_iam_user" "tenant" {
  name = "client02"
  tags = {
    cluster      = "shared-02"
    "managed-by" = "tenantctl"
    tenant       = "client02"
    tier         = "basic"
  }
}

# The tenant's user may assume this role only from its allowed source addresses.
resource "aws_iam_role" "access" {
  name        = "client02-access"
  description = "Database access for tenant client02"
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
            "aws:SourceIp" = ["203.0.113.0/24", "127.0.0.1/32"]
          }
        }
      },
    ]
  })
  tags = {
    cluster      = "shared-02"
    "managed-by" = "tenantctl"
    tenant       = "client02"
    tier         = "basic"
  }
}
