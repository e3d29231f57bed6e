# Cluster stack: every Aurora PostgreSQL cluster in one root module. Rendered by tenantctl; do not edit.

terraform {
  required_version = ">= 1.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 3.39.0"
    }
  }

  # Partial configuration: the runner supplies -backend-config at init (no paths or buckets in files).
  backend "local" {}
}

provider "aws" {
  region = "eu-west-1"

  # Local target: every service the stacks use goes to the local AWS stand-in (moto).
  # Credentials come from the environment (AWS_ACCESS_KEY_ID, ...), never from this file.
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_get_ec2_platforms      = true
  s3_force_path_style         = true

  endpoints {
    dynamodb       = var.aws_endpoint
    iam            = var.aws_endpoint
    rds            = var.aws_endpoint
    s3             = var.aws_endpoint
    secretsmanager = var.aws_endpoint
    sts            = var.aws_endpoint
  }
}
