# One customer managed key for everything this module encrypts: the two
# secrets, the Lambda environment, the log group, the dead-letter queue and
# ElastiCache at rest. Skipped when var.kms_key_arn brings your own key.
resource "aws_kms_key" "this" {
  count = local.create_kms_key ? 1 : 0

  description             = "${var.name}: secrets, logs, dead-letter queue, ElastiCache and Lambda environment"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_key_deletion_window_days

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # The account keeps full control of the key and IAM policies decide who
        # uses it (the function role gets kms:Decrypt/GenerateDataKey in iam.tf).
        # In a key policy "Resource": "*" means this key only.
        Sid       = "AccountAdministersKeyThroughIam"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        # CloudWatch Logs encrypts the function's log group and, with
        # destination = "cloudwatch_logs", the audit log group; nothing else.
        Sid       = "CloudWatchLogsForThisLogGroup"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.${data.aws_partition.current.dns_suffix}" }
        Action = [
          "kms:Encrypt*",
          "kms:Decrypt*",
          "kms:ReEncrypt*",
          "kms:GenerateDataKey*",
          "kms:Describe*",
        ]
        Resource = "*"
        Condition = {
          ArnEquals = {
            "kms:EncryptionContext:aws:logs:arn" = concat(
              ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group_name}"],
              local.to_logs ? [local.audit_log_group_arn] : [],
            )
          }
        }
      },
    ]
  })
}

resource "aws_kms_alias" "this" {
  count = local.create_kms_key ? 1 : 0

  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this[0].key_id
}
