resource "aws_iam_user" "tenant" {
  name = "client01"
  tags = {
    cluster      = "shared-01"
    "managed-by" = "tenantctl"
    tenant       = "client01"
    tier         = "standard"
  }
}

# The tenant's user may assume this role only from its allowed source addresses.
resource "aws_iam_role" "access" {
  name        = "client01-access"
  description = "Database access for tenant client01"
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
            "aws:SourceIp" = ["109.241.200.168/32", "127.0.0.1/32"]
          }
        }
      },
    ]
  })
  tags = {
    cluster      = "shared-01"
    "managed-by" = "tenantctl"
    tenant       = "client01"
    tier         = "standard"
  }
}
