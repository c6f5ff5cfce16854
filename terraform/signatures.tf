# Kong's audit signatures. With the public half of Kong's audit_log_signing_key
# the program verifies every row it ships and records the verdict in the
# event (additionalEventData.kongSignature); a row whose signature does not
# verify is still shipped, logged at ERROR, and counted in the EMF metric
# SignaturesInvalid, which the alarm below watches.

variable "kong_audit_signing_public_key" {
  description = "Optional PEM of the public key(s) of Kong's audit_log_signing_key: RSA or EC (P-256, P-384, P-521) keys in one or more PUBLIC KEY, RSA PUBLIC KEY or EC PUBLIC KEY blocks, several during a key rotation (env KONG_AUDIT_SIGNING_PUBLIC_KEY). Empty = signatures are not checked and no alarm is created. Lambda limits all environment variables together to 4 KB; an RSA-2048 public key is about 450 characters, an EC P-256 key about 180."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition = var.kong_audit_signing_public_key == "" || (
      can(regex("-----BEGIN ((RSA|EC) )?PUBLIC KEY-----", var.kong_audit_signing_public_key)) &&
      !can(regex("PRIVATE KEY", var.kong_audit_signing_public_key)) &&
      length(var.kong_audit_signing_public_key) <= 2400
    )
    error_message = "kong_audit_signing_public_key must be PEM public key text (-----BEGIN PUBLIC KEY-----, -----BEGIN RSA PUBLIC KEY----- or -----BEGIN EC PUBLIC KEY-----; never the private key, which stays on Kong) of at most 2400 characters (Lambda's 4 KB limit on all environment variables)."
  }
}

locals {
  verify_signatures = var.kong_audit_signing_public_key != ""
  signature_environment = local.verify_signatures ? {
    KONG_AUDIT_SIGNING_PUBLIC_KEY = var.kong_audit_signing_public_key
  } : {}
}

resource "aws_cloudwatch_metric_alarm" "invalid_signature" {
  count = local.verify_signatures ? 1 : 0

  alarm_name          = "${var.name}-invalid-kong-signature"
  alarm_description   = "${var.name}: audit entries whose Kong signature does not verify under kong_audit_signing_public_key were shipped with kongSignature.status = invalid: altered after Kong signed them, or signed with a key that is not configured. Each is logged at ERROR with its key in ${local.log_group_name}; `kong-audit-shipper verify` re-checks Kong's trail or an export."
  namespace           = local.emf_namespace
  metric_name         = "SignaturesInvalid"
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
