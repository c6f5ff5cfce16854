# Alarms on the function (AWS/Lambda) and on the program's own metrics. The
# program prints one CloudWatch EMF record per run to stdout:
#   namespace  KongAuditShipper
#   dimension  FunctionName = <function name>
#   metrics    Rejected (entries CloudTrail rejected for good, dead-lettered),
#              Failed   (entries not shipped this run, left for the next run),
#              LagSeconds (age of the oldest entry not yet shipped),
#              among others.
# An alarm matches a metric only with exactly this dimension set.

locals {
  alarm_actions = var.alarm_sns_topic_arns
  emf_namespace = "KongAuditShipper"
  emf_dimensions = {
    FunctionName = aws_lambda_function.this.function_name
  }
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  alarm_name          = "${var.name}-errors"
  alarm_description   = "${var.name}: the function failed or timed out (it is not retried; the next scheduled run re-reads the window). See log group ${local.log_group_name}."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.this.function_name }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "rejected" {
  alarm_name          = "${var.name}-rejected"
  alarm_description   = "${var.name}: CloudTrail Lake permanently rejected audit entries. They are in the dead-letter queue ${aws_sqs_queue.dead_letter.name} (kept 14 days) with the error code."
  namespace           = local.emf_namespace
  metric_name         = "Rejected"
  dimensions          = local.emf_dimensions
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "failed" {
  alarm_name          = "${var.name}-failed"
  alarm_description   = "${var.name}: audit entries could not be shipped in a run (Kong, Redis or CloudTrail unavailable or throttling); they are retried by the next run."
  namespace           = local.emf_namespace
  metric_name         = "Failed"
  dimensions          = local.emf_dimensions
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "lag" {
  count = var.enable_lag_alarm ? 1 : 0

  alarm_name          = "${var.name}-lag"
  alarm_description   = "${var.name}: the oldest unshipped audit entry is older than ${local.lag_threshold_seconds} s. Kong deletes entries after audit_log_record_ttl; act before they expire."
  namespace           = local.emf_namespace
  metric_name         = "LagSeconds"
  dimensions          = local.emf_dimensions
  statistic           = "Maximum"
  period              = var.schedule_period_seconds
  evaluation_periods  = 1
  threshold           = local.lag_threshold_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Fires when, for N schedule periods in a row, no invocation succeeded:
# every run failed, or the function was not invoked at all (missing data is
# breaching), e.g. a disabled rule or a broken permission.
resource "aws_cloudwatch_metric_alarm" "no_success" {
  count = var.enable_no_success_alarm ? 1 : 0

  alarm_name          = "${var.name}-no-successful-run"
  alarm_description   = "${var.name}: no successful invocation for ${var.no_success_alarm_periods} x ${var.schedule_period_seconds} s."
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  evaluation_periods  = var.no_success_alarm_periods
  datapoints_to_alarm = var.no_success_alarm_periods
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "successes"
    expression  = "FILL(invocations, 0) - FILL(errors, 0)"
    label       = "Successful invocations"
    return_data = true
  }

  metric_query {
    id = "invocations"
    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Invocations"
      dimensions  = { FunctionName = aws_lambda_function.this.function_name }
      stat        = "Sum"
      period      = var.schedule_period_seconds
    }
  }

  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Errors"
      dimensions  = { FunctionName = aws_lambda_function.this.function_name }
      stat        = "Sum"
      period      = var.schedule_period_seconds
    }
  }

  lifecycle {
    precondition {
      condition     = var.no_success_alarm_periods * var.schedule_period_seconds <= 86400
      error_message = "no_success_alarm_periods x schedule_period_seconds must not exceed one day (CloudWatch's limit on an alarm's evaluation range)."
    }
  }
}
