output "clusters" {
  description = "Connection facts per cluster name; the pipeline passes them to each tenant stack."
  value = {
    for name, cluster in aws_rds_cluster.this : name => {
      endpoint            = cluster.endpoint
      reader_endpoint     = cluster.reader_endpoint
      port                = cluster.port
      cluster_resource_id = cluster.cluster_resource_id
      arn                 = cluster.arn
      admin_secret_arn    = aws_secretsmanager_secret_version.admin[name].arn
    }
  }
}
