# One entry per cluster. The resources iterate over this map (for_each) rather than being written
# out per cluster: removing a cluster from the clients file then removes a key, which the literal
# prevent_destroy below refuses; deleting a whole resource block would bypass it.
locals {
  clusters = {
    "premium-acme" = {
      identifier                = "premium-acme"
      engine_version            = "15.4"
      min_capacity              = 2
      max_capacity              = 64
      final_snapshot_identifier = "premium-acme-final"
      tags = {
        cluster      = "premium-acme"
        "managed-by" = "tenantctl"
        tenancy      = "dedicated"
      }
    }
    "shared-01" = {
      identifier                = "shared-01"
      engine_version            = "15.4"
      min_capacity              = 0.5
      max_capacity              = 16
      final_snapshot_identifier = "shared-01-final"
      tags = {
        cluster      = "shared-01"
        "managed-by" = "tenantctl"
        tenancy      = "shared"
      }
    }
    "shared-02" = {
      identifier                = "shared-02"
      engine_version            = "15.4"
      min_capacity              = 0.5
      max_capacity              = 16
      final_snapshot_identifier = "shared-02-final"
      tags = {
        cluster      = "shared-02"
        "managed-by" = "tenantctl"
        tenancy      = "shared"
      }
    }
  }
}

resource "aws_rds_cluster" "this" {
  for_each = local.clusters

  cluster_identifier                  = each.value.identifier
  engine                              = "aurora-postgresql"
  engine_mode                         = "provisioned"
  engine_version                      = each.value.engine_version
  master_username                     = "tenantctl_admin"
  master_password                     = var.master_password
  iam_database_authentication_enabled = true
  storage_encrypted                   = true
  deletion_protection                 = true
  skip_final_snapshot                 = false
  final_snapshot_identifier           = each.value.final_snapshot_identifier
  copy_tags_to_snapshot               = true
  tags                                = each.value.tags

  lifecycle {
    prevent_destroy = true
    # moto reports a zeroed Serverless v1 scaling_configuration for provisioned clusters, which
    # the provider (3.x) sees as drift on every plan; tenantctl never uses Serverless v1.
    ignore_changes = [scaling_configuration]
  }
}

# The local target's stand-in for the RDS-managed master secret (aws: manage_master_user_password): the
# same JSON ({"username", "password"}) in moto's Secrets Manager, read by tenantctl the same way.
resource "aws_secretsmanager_secret" "admin" {
  for_each = local.clusters

  name                    = "tenantctl/${each.value.identifier}/master"
  description             = "tenantctl local target: master login of cluster ${each.key}"
  recovery_window_in_days = 0
  tags                    = each.value.tags
}

resource "aws_secretsmanager_secret_version" "admin" {
  for_each = local.clusters

  secret_id     = aws_secretsmanager_secret.admin[each.key].id
  secret_string = jsonencode({ username = "tenantctl_admin", password = var.master_password })
}
