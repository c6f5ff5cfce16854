# Optional: create the CloudTrail Lake channel (source "Custom") with the
# awscc provider; hashicorp/aws has no channel resource. The event data store
# is never created here: CloudTrail Lake closed to new customers on
# 2026-05-31, and CreateEventDataStore fails in accounts that never used Lake.
resource "awscc_cloudtrail_channel" "this" {
  count = var.create_channel ? 1 : 0

  name   = coalesce(var.channel_name, var.name)
  source = "Custom"
  destinations = [
    {
      type     = "EVENT_DATA_STORE"
      location = var.event_data_store_arn
    },
  ]
  tags = length(var.tags) > 0 ? [for k, v in var.tags : { key = k, value = v }] : null

  lifecycle {
    precondition {
      condition     = var.event_data_store_arn != ""
      error_message = "create_channel = true needs event_data_store_arn (an existing CloudTrail Lake event data store)."
    }
  }
}
