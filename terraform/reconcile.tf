###############################################################################
# Reconcile: once a day the function asks the destination which entries it
# holds and compares them with Kong's trail (event {"action": "reconcile"}).
# It reports entries Kong holds that the destination does not (MissingEntries)
# or holds only in part (PartialEntries), ships them again, and the alarm below
# watches both.
#
# It reads the destination, so the role may: for CloudTrail Lake, find the
# channel's event data store (GetChannel) and query it; for CloudWatch Logs,
# read the audit log group (FilterLogEvents).
###############################################################################

variable "reconcile_enabled" {
  description = "Run `reconcile` daily (a second schedule invoking the function with {\"action\": \"reconcile\"}), grant the role what it needs to read the destination, and alarm on MissingEntries and PartialEntries. The schedule runs while schedule_enabled = true."
  type        = bool
  default     = true
  nullable    = false
}

variable "reconcile_schedule_expression" {
  description = "EventBridge schedule of the reconcile, rate() or cron()."
  type        = string
  default     = "rate(1 day)"
  nullable    = false

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.reconcile_schedule_expression))
    error_message = "reconcile_schedule_expression must be rate(...) or cron(...)."
  }
}

variable "reconcile_window_seconds" {
  description = "How far back each reconcile compares Kong's trail with the destination, in seconds (env RECONCILE_WINDOW_SECONDS). Default 172800 (two days): every entry is compared on two daily runs."
  type        = number
  default     = 172800
  nullable    = false

  validation {
    condition     = var.reconcile_window_seconds >= 3600 && var.reconcile_window_seconds <= 31 * 86400
    error_message = "reconcile_window_seconds must be between 3600 (an hour) and 2678400 (31 days, beyond Kong's default retention)."
  }
}

variable "event_data_store_kms_key_arn" {
  description = "Customer managed KMS key of the CloudTrail Lake event data store, when it has one: the role may then decrypt with it (through CloudTrail) to query the store. Empty = the store uses an AWS owned key."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.event_data_store_kms_key_arn == "" || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.event_data_store_kms_key_arn))
    error_message = "event_data_store_kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)."
  }
}

locals {
  reconcile_to_lake = var.reconcile_enabled && !local.to_logs

  # The channel's region and account (a created channel lives in the provider's), where the event
  # data store is when event_data_store_arn does not name it.
  channel_arn_parts = split(":", var.channel_arn)
  channel_region    = var.create_channel || var.channel_arn == "" ? local.region : local.channel_arn_parts[3]
  channel_account   = var.create_channel || var.channel_arn == "" ? local.account_id : local.channel_arn_parts[4]
  event_data_store_arns = (
    var.event_data_store_arn != "" ? [var.event_data_store_arn] :
    ["arn:${local.partition}:cloudtrail:${local.channel_region}:${local.channel_account}:eventdatastore/*"]
  )

  reconcile_environment = merge(
    var.reconcile_enabled ? { RECONCILE_WINDOW_SECONDS = tostring(var.reconcile_window_seconds) } : {},
    # Without it the program asks GetChannel which store the channel delivers to.
    local.reconcile_to_lake && var.event_data_store_arn != "" ? { EVENT_DATA_STORE = var.event_data_store_arn } : {},
  )
}

resource "aws_cloudwatch_event_rule" "reconcile" {
  count = var.reconcile_enabled ? 1 : 0

  name                = "${var.name}-reconcile"
  description         = "Reconciles ${var.name} with its destination (${var.reconcile_schedule_expression})"
  schedule_expression = var.reconcile_schedule_expression
  state               = var.schedule_enabled ? "ENABLED" : "DISABLED"
}

resource "aws_cloudwatch_event_target" "reconcile" {
  count = var.reconcile_enabled ? 1 : 0

  rule      = aws_cloudwatch_event_rule.reconcile[0].name
  target_id = "kong-audit-shipper-reconcile"
  arn       = aws_lambda_function.this.arn
  input     = jsonencode({ action = "reconcile" })

  retry_policy {
    maximum_event_age_in_seconds = local.max_event_age_seconds
    maximum_retry_attempts       = 5
  }
}

resource "aws_lambda_permission" "reconcile" {
  count = var.reconcile_enabled ? 1 : 0

  statement_id  = "AllowEventBridgeReconcile"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.reconcile[0].arn
}

data "aws_iam_policy_document" "reconcile" {
  count = var.reconcile_enabled ? 1 : 0

  dynamic "statement" {
    for_each = local.reconcile_to_lake ? [1] : []
    content {
      sid       = "ReconcileFindTheEventDataStore"
      actions   = ["cloudtrail:GetChannel"]
      resources = [local.channel_arn]
    }
  }

  dynamic "statement" {
    for_each = local.reconcile_to_lake ? [1] : []
    content {
      # The store the channel delivers to: event_data_store_arn, else any store of the channel's
      # account and region (the program finds which one with GetChannel).
      sid       = "ReconcileQueryTheEventDataStore"
      actions   = ["cloudtrail:StartQuery", "cloudtrail:DescribeQuery", "cloudtrail:GetQueryResults", "cloudtrail:CancelQuery"]
      resources = local.event_data_store_arns
    }
  }

  dynamic "statement" {
    for_each = local.reconcile_to_lake && var.event_data_store_kms_key_arn != "" ? [1] : []
    content {
      sid       = "ReconcileDecryptTheEventDataStore"
      actions   = ["kms:Decrypt"]
      resources = [var.event_data_store_kms_key_arn]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["cloudtrail.${local.channel_region}.${data.aws_partition.current.dns_suffix}"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.reconcile_enabled && local.to_logs ? [1] : []
    content {
      sid       = "ReconcileReadTheAuditLogGroup"
      actions   = ["logs:FilterLogEvents"]
      resources = [local.audit_log_group_arn, "${local.audit_log_group_arn}:*"]
    }
  }
}

resource "aws_iam_role_policy" "reconcile" {
  count = var.reconcile_enabled ? 1 : 0

  name   = "kong-audit-shipper-reconcile"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.reconcile[0].json
}

# The reconcile's own EMF record (same namespace and dimension as a run's) carries MissingEntries and
# PartialEntries: any above 0 means the destination lacked entries Kong holds.
resource "aws_cloudwatch_metric_alarm" "missing_entries" {
  count = var.reconcile_enabled ? 1 : 0

  alarm_name          = "${var.name}-missing-entries"
  alarm_description   = "${var.name}: a reconcile found audit entries Kong holds that the destination does not (MissingEntries), or holds only in part (PartialEntries). The reconcile ships them again; see its summary line in ${local.log_group_name}, and run `kong-audit-shipper reconcile --output report.json` for the list."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "missing_or_partial"
    expression  = "FILL(missing, 0) + FILL(partial, 0)"
    label       = "Entries missing or partial in the destination"
    return_data = true
  }

  metric_query {
    id = "missing"
    metric {
      namespace   = local.emf_namespace
      metric_name = "MissingEntries"
      dimensions  = local.emf_dimensions
      stat        = "Maximum"
      period      = 3600
    }
  }

  metric_query {
    id = "partial"
    metric {
      namespace   = local.emf_namespace
      metric_name = "PartialEntries"
      dimensions  = local.emf_dimensions
      stat        = "Maximum"
      period      = 3600
    }
  }
}
