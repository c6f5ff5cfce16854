###############################################################################
# Destination: CloudTrail Lake (a channel) or CloudWatch Logs (a log group)
#
# CloudTrail Lake takes no new customers since 2026-05-31. With
# destination = "cloudwatch_logs" the module creates a KMS-encrypted log group
# for the audit trail, with a long retention, and the function puts every entry
# into it with PutLogEvents; the channel inputs are then not used (and must be
# left empty).
###############################################################################

variable "destination" {
  description = "Where the entries go: \"cloudtrail_lake\" (a channel: channel_arn or create_channel) or \"cloudwatch_logs\" (a log group this module creates: audit_log_group_name)."
  type        = string
  default     = "cloudtrail_lake"
  nullable    = false

  validation {
    condition     = contains(["cloudtrail_lake", "cloudwatch_logs"], var.destination)
    error_message = "destination must be \"cloudtrail_lake\" or \"cloudwatch_logs\"."
  }
}

variable "audit_log_group_name" {
  description = "Name of the log group the audit trail is shipped to when destination = \"cloudwatch_logs\" (env CLOUDWATCH_LOG_GROUP). Empty = /kong-audit-shipper/<name>/audit."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.audit_log_group_name == "" || can(regex("^[.\\-_/#A-Za-z0-9]{1,512}$", var.audit_log_group_name))
    error_message = "audit_log_group_name must be 1-512 characters of letters, digits and ._-/#."
  }
}

variable "audit_log_stream_name" {
  description = "Log stream the function writes in the audit log group (env CLOUDWATCH_LOG_STREAM); the function creates it on its first run."
  type        = string
  default     = "kong-audit-shipper"
  nullable    = false

  validation {
    condition     = length(var.audit_log_stream_name) >= 1 && length(var.audit_log_stream_name) <= 512 && !can(regex("[:*]", var.audit_log_stream_name))
    error_message = "audit_log_stream_name must be 1-512 characters without ':' or '*'."
  }
}

variable "audit_log_retention_days" {
  description = "Retention of the audit log group, in days. Default 3653 (ten years), the longest fixed retention CloudWatch Logs offers: audit evidence outlives most other logs. 0 = never expire. Keep it at 14 days or more: events the group would not keep are clamped into a narrower window (see docs/cloudwatch-logs.md)."
  type        = number
  default     = 3653
  nullable    = false

  validation {
    condition     = contains([0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.audit_log_retention_days)
    error_message = "audit_log_retention_days must be one of the values CloudWatch Logs accepts (e.g. 365, 1827, 3653, or 0 for never)."
  }
}

locals {
  to_logs              = var.destination == "cloudwatch_logs"
  audit_log_group_name = var.audit_log_group_name != "" ? var.audit_log_group_name : "/kong-audit-shipper/${var.name}/audit"
  # The ARN as IAM and KMS see it (known at plan time, whether the group exists yet or not).
  audit_log_group_arn = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.audit_log_group_name}"

  # Exactly one destination in the function's environment: the program refuses both.
  destination_environment = local.to_logs ? {
    CLOUDWATCH_LOG_GROUP  = local.audit_log_group_name
    CLOUDWATCH_LOG_STREAM = var.audit_log_stream_name
  } : { CHANNEL_ARN = local.channel_arn }
}

resource "aws_cloudwatch_log_group" "audit" {
  count = local.to_logs ? 1 : 0

  name              = local.audit_log_group_name
  retention_in_days = var.audit_log_retention_days
  kms_key_id        = local.kms_key_arn

  lifecycle {
    precondition {
      condition     = var.channel_arn == "" && !var.create_channel
      error_message = "destination = \"cloudwatch_logs\" ships to the log group only: leave channel_arn empty and create_channel false."
    }
  }
}

# Writing the trail: put events, create the stream on the first run, and the
# DescribeLogStreams with which every start (and `check`) proves the group is
# there. This group only: its ARN, and its streams (":*").
data "aws_iam_policy_document" "cloudwatch_logs" {
  count = local.to_logs ? 1 : 0

  statement {
    sid       = "ShipTheTrailToItsLogGroup"
    actions   = ["logs:PutLogEvents", "logs:CreateLogStream", "logs:DescribeLogStreams"]
    resources = [local.audit_log_group_arn, "${local.audit_log_group_arn}:*"]
  }
}

resource "aws_iam_role_policy" "cloudwatch_logs" {
  count = local.to_logs ? 1 : 0

  name   = "kong-audit-shipper-cloudwatch-logs"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.cloudwatch_logs[0].json
}

output "destination" {
  description = "Where the function ships the entries: cloudtrail_lake or cloudwatch_logs."
  value       = var.destination
}

output "audit_log_group_name" {
  description = "Log group holding the audit trail (null unless destination = \"cloudwatch_logs\")."
  value       = local.to_logs ? aws_cloudwatch_log_group.audit[0].name : null
}

output "audit_log_group_arn" {
  description = "ARN of the log group holding the audit trail (null unless destination = \"cloudwatch_logs\")."
  value       = local.to_logs ? aws_cloudwatch_log_group.audit[0].arn : null
}
