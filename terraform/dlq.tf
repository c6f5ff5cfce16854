# Entries CloudTrail Lake rejected permanently (any per-event error other than
# Throttling/InternalFailure) are sent here whole by the program, with the
# error code, so nothing vanishes. 14 days is SQS's maximum retention: alarm
# "Rejected" fires on the first one, so someone looks well before that.
resource "aws_sqs_queue" "dead_letter" {
  name                      = "${var.name}-rejected"
  message_retention_seconds = 1209600

  # SQS's maximum (raised from 256 KiB in 2025), so an audit entry with a large
  # request body still fits whole. The provider's default is 256 KiB.
  max_message_size = 1048576

  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
}
