output "iam_user_arn" {
  description = "The tenant's IAM user."
  value       = aws_iam_user.tenant.arn
}

output "iam_role_arn" {
  description = "Role the tenant's user assumes (from its allowed source addresses) to reach its databases."
  value       = aws_iam_role.access.arn
}
