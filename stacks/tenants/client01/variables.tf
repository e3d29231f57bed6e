variable "aws_endpoint" {
  description = "URL of the local AWS stand-in (moto server), e.g. http://127.0.0.1:5000."
  type        = string
}

# Filled by the pipeline from the cluster stack's "clusters" output for this tenant's cluster.
variable "cluster_endpoint" {
  description = "Writer endpoint of the tenant's cluster."
  type        = string
}

variable "cluster_reader_endpoint" {
  description = "Reader endpoint of the tenant's cluster."
  type        = string
}

variable "cluster_port" {
  description = "Port of the tenant's cluster."
  type        = number
}

variable "cluster_resource_id" {
  description = "Resource id of the tenant's cluster (cluster-...), used in the rds-db:connect ARN."
  type        = string
}

variable "cluster_arn" {
  description = "ARN of the tenant's cluster."
  type        = string
}
