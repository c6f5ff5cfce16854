# Trigger: an EventBridge rule rather than EventBridge Scheduler.
# - The rule needs no IAM role: a Lambda resource-based permission scoped to
#   the rule's ARN is enough, so there is one role fewer to keep least-privilege.
# - Rules invoke Lambda asynchronously (documented), so the function's
#   event_invoke_config (no retries, bounded event age) governs what happens
#   after a failure. Scheduler's invocation mode is not documented as clearly,
#   and it brings its own retry policy and KMS settings to get right.
# - Scheduler's extras (time zones, flexible windows, one-off schedules) are
#   not needed for "every hour".
resource "aws_cloudwatch_event_rule" "schedule" {
  name                = "${var.name}-schedule"
  description         = "Runs ${var.name} (${var.schedule_expression})"
  schedule_expression = var.schedule_expression
  state               = var.schedule_enabled ? "ENABLED" : "DISABLED"
}

resource "aws_cloudwatch_event_target" "lambda" {
  rule      = aws_cloudwatch_event_rule.schedule.name
  target_id = "kong-audit-shipper"
  arn       = aws_lambda_function.this.arn

  # Delivery retries (the async Invoke call itself failing) are harmless and
  # bounded to one period; the function's own retries are off.
  retry_policy {
    maximum_event_age_in_seconds = local.max_event_age_seconds
    maximum_retry_attempts       = 5
  }
}

resource "aws_lambda_permission" "schedule" {
  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.schedule.arn
}
