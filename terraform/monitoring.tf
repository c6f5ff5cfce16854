# Alarms on the function (AWS/Lambda) and on the program's own metrics. The
# program prints one CloudWatch EMF record per run to stdout:
#   namespace  KongAuditShipper
#   dimension  FunctionName = <function name>
#   metrics    Rejected (entries CloudTrail rejected for good, dead-lettered),
#              Failed   (entries not shipped this run, left for the next run),
#              Held     (entries another run was shipping; this one left them),
#              LagSeconds (age of the oldest entry the run knows is not
#                         shipped: failed, held, or not read before its time
#                         ran out; 0 when everything it read is shipped),
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
  alarm_description   = "${var.name}: a run found an audit entry older than ${local.lag_threshold_seconds} s that is still not shipped (failed, held by another run, or not reached before the run's time ran out). A quiet Kong does not raise it. Kong deletes entries after audit_log_record_ttl (30 days by default): act before they expire. See the summary lines in ${local.log_group_name}."
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
# breaching), e.g. a broken permission or a rule disabled outside Terraform.
# It exists only while the schedule is enabled: with schedule_enabled = false
# nothing invokes the function, and the alarm would only ever fire. Missing data
# also counts before the first run: make the first run before enabling the
# schedule (README, "First run"), or expect this alarm until the first
# scheduled run has succeeded.
resource "aws_cloudwatch_metric_alarm" "no_success" {
  count = local.create_no_success_alarm ? 1 : 0

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

# The dead-letter queue keeps letters 14 days, SQS's maximum; Kong keeps the
# entries 30. A letter not redriven in time is gone, and its entry, marked
# rejected, is never read again: alarm well before.
resource "aws_cloudwatch_metric_alarm" "dead_letter_age" {
  count = var.dead_letter_age_alarm_days > 0 ? 1 : 0

  alarm_name          = "${var.name}-dead-letters-aging"
  alarm_description   = "${var.name}: a dead letter in ${aws_sqs_queue.dead_letter.name} is older than ${var.dead_letter_age_alarm_days} days. SQS deletes it at 14 days: fix the cause and run `kong-audit-shipper redrive` before then."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.dead_letter.name }
  statistic           = "Maximum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = var.dead_letter_age_alarm_days * 86400
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# With noeviction a full store refuses new claims and every run fails: warn
# while there is room to act (a bigger node type, or a shorter
# audit_log_record_ttl in Kong, which shortens every key's life).
# One alarm per node (ElastiCache names a replication group's nodes <id>-001,
# <id>-002, ...): whichever is primary after a failover is covered.
resource "aws_cloudwatch_metric_alarm" "redis_memory" {
  count = local.create_redis ? var.redis_num_cache_clusters : 0

  alarm_name          = format("%s-dedup-store-memory-%03d", var.name, count.index + 1)
  alarm_description   = "${var.name}: a node of the dedup store uses more than 80% of its memory. It never evicts (maxmemory-policy noeviction): once full, claims are refused and runs fail. Move to a larger redis_node_type."
  namespace           = "AWS/ElastiCache"
  metric_name         = "DatabaseMemoryUsagePercentage"
  dimensions          = { CacheClusterId = format("%s-%03d", aws_elasticache_replication_group.this[0].id, count.index + 1) }
  statistic           = "Maximum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = 80
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
