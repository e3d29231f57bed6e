variable "aws_endpoint" {
  description = "URL of the local AWS stand-in (moto server), e.g. http://127.0.0.1:5000."
  type        = string
}

variable "master_password" {
  description = "Master password of the local clusters; supplied by the runner from the environment (TF_VAR_master_password)."
  type        = string
  sensitive   = true
}
