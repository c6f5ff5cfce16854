# Entries CloudTrail Lake rejected permanently (any per-event error other than
# Throttling/InternalFailure) are sent here whole by the program, with the
# error code, so nothing vanishes. 14 days is SQS's maximum retention: alarm
# "Rejected" fires on the first one, so someone looks well before that.
resource "aws_sqs_queue" "dead_letter" {
  name                              = "${var.name}-rejected"
  message_retention_seconds         = 1209600
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
}
