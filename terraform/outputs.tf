output "function_name" {
  description = "Name of the Lambda function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the Lambda function."
  value       = aws_lambda_function.this.arn
}

output "schedule_rule_arn" {
  description = "ARN of the EventBridge rule that invokes the function."
  value       = aws_cloudwatch_event_rule.schedule.arn
}

output "reconcile_rule_arn" {
  description = "ARN of the EventBridge rule that invokes the daily reconcile (null when reconcile_enabled = false)."
  value       = var.reconcile_enabled ? aws_cloudwatch_event_rule.reconcile[0].arn : null
}

output "dashboard_url" {
  description = "Address of the function's CloudWatch dashboard in the console (null when create_dashboard = false)."
  value       = var.create_dashboard ? "https://${lookup(local.console_host, local.partition, local.console_host["aws"])}/cloudwatch/home?region=${local.region}#dashboards/dashboard/${aws_cloudwatch_dashboard.this[0].dashboard_name}" : null
}

output "channel_arn" {
  description = "CloudTrail Lake channel the function puts events to (created or given)."
  value       = local.channel_arn
}

output "redis_endpoint" {
  description = "Primary endpoint address of the ElastiCache replication group, or null when existing_redis_url is used."
  value       = local.create_redis ? aws_elasticache_replication_group.this[0].primary_endpoint_address : null
}

output "redis_url" {
  description = "REDIS_URL given to the function (never contains a password)."
  value       = local.redis_url
}

output "dead_letter_queue_url" {
  description = "URL of the SQS queue holding permanently rejected entries."
  value       = aws_sqs_queue.dead_letter.url
}

output "dead_letter_queue_arn" {
  description = "ARN of the SQS queue holding permanently rejected entries."
  value       = aws_sqs_queue.dead_letter.arn
}

output "kong_admin_token_secret_arn" {
  description = "ARN of the secret holding the Kong RBAC token (null with audit_source = \"konnect\")."
  value       = local.reads_konnect ? null : local.kong_token_secret_arn
}

output "redis_password_secret_arn" {
  description = "ARN of the secret holding the Redis AUTH token (null when there is none)."
  value       = local.has_redis_password ? local.redis_password_secret_arn : null
}

output "log_group_name" {
  description = "CloudWatch log group of the function."
  value       = aws_cloudwatch_log_group.this.name
}

output "security_group_id" {
  description = "Security group of the function's ENIs (allow it on Kong's side); null when the function runs outside a VPC (subnet_ids = [])."
  value       = local.in_vpc ? aws_security_group.lambda[0].id : null
}

output "redis_security_group_id" {
  description = "Security group of the ElastiCache nodes (null when existing_redis_url is used)."
  value       = local.create_redis ? aws_security_group.redis[0].id : null
}

output "kms_key_arn" {
  description = "KMS key encrypting the secrets, logs, queue, ElastiCache and environment."
  value       = local.kms_key_arn
}

output "execution_role_arn" {
  description = "ARN of the function's execution role."
  value       = aws_iam_role.this.arn
}

output "lambda_environment" {
  description = "Environment given to the function (no secret values: only secret ARNs). Handy for running the CLI with the same settings."
  value       = local.lambda_environment
}
