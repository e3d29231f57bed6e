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

# rds-db:connect as exactly the tenant's login role, on exactly the tenant's cluster.
resource "aws_iam_policy" "rds_connect" {
  name        = "client02-rds-connect"
  description = "IAM database authentication as client02"
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ConnectAsTenantLoginRole"
        Effect   = "Allow"
        Action   = "rds-db:connect"
        Resource = "arn:aws:rds-db:eu-west-1:123456789012:dbuser:${var.cluster_resource_id}/client02"
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

resource "aws_iam_role_policy_attachment" "rds_connect" {
  role       = aws_iam_role.access.name
  policy_arn = aws_iam_policy.rds_connect.arn
}
