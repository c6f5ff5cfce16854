data "aws_iam_policy_document" "assume_role" {
  statement {
    sid     = "LambdaAssumesRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name_prefix          = "${substr(var.name, 0, 37)}-"
  description          = "Execution role of the ${var.name} Lambda"
  assume_role_policy   = data.aws_iam_policy_document.assume_role.json
  permissions_boundary = var.permissions_boundary_arn
}

# Least privilege: every statement names its resources, except the EC2
# network-interface and X-Ray actions, which accept only "*".
data "aws_iam_policy_document" "this" {
  #checkov:skip=CKV_AWS_111:Only the Lambda VPC statement has write actions on "*": Lambda manages the function's ENIs with ec2:Create/DeleteNetworkInterface and Assign/UnassignPrivateIpAddresses under this role, and those calls are not scoped by resource in Lambda's own documented policy (AWSLambdaVPCAccessExecutionRole uses "*" too).
  #checkov:skip=CKV_AWS_356:"*" appears only in the Lambda VPC ENI statement (ec2:*NetworkInterface*, required by Lambda on "*") and the X-Ray statement (xray:PutTraceSegments/PutTelemetryRecords have no resource-level permissions).

  dynamic "statement" {
    # With destination = "cloudwatch_logs", cloudwatch_logs.tf grants the log group instead.
    for_each = local.to_logs ? [] : [1]
    content {
      sid       = "PutAuditEventsToTheChannel"
      actions   = ["cloudtrail-data:PutAuditEvents"]
      resources = [local.channel_arn]
    }
  }

  statement {
    sid       = "ReadTheTwoSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.secret_arns
  }

  statement {
    # Decrypt only through Secrets Manager (the two secrets) and Lambda (the
    # function's environment; Lambda normally decrypts it under a grant it
    # creates, this covers the role-based path): the key cannot be used
    # directly with these credentials.
    sid       = "DecryptSecretsAndEnvironment"
    actions   = ["kms:Decrypt"]
    resources = distinct(concat([local.kms_key_arn], var.additional_kms_key_arns))

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values = [
        "secretsmanager.${local.region}.${data.aws_partition.current.dns_suffix}",
        "lambda.${local.region}.${data.aws_partition.current.dns_suffix}",
      ]
    }
  }

  statement {
    # Sending to the KMS-encrypted dead-letter queue: SQS asks KMS for a data
    # key (GenerateDataKey) and may decrypt a cached one (Decrypt), on behalf
    # of the sender, and only through SQS.
    sid       = "EncryptDeadLetters"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [local.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sqs.${local.region}.${data.aws_partition.current.dns_suffix}"]
    }
  }

  statement {
    sid       = "DeadLetterRejectedEntries"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letter.arn]
  }

  statement {
    sid       = "WriteOwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }

  dynamic "statement" {
    # Required by Lambda to attach the function to the VPC. These EC2 actions
    # are used by the Lambda service with this role and must be allowed on "*"
    # (the same list as the AWSLambdaVPCAccessExecutionRole managed policy,
    # which has had ec2:DescribeSubnets since 2024; it is not attached because
    # it also grants logs:* on every log group). Not outside a VPC.
    for_each = local.in_vpc ? [1] : []
    content {
      sid = "LambdaVpcNetworkInterfaces"
      actions = [
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
      ]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = var.tracing_mode == "Active" ? [1] : []
    content {
      # X-Ray has no resource-level permissions for these two actions: "*" is
      # the only valid resource.
      sid       = "XRayTraces"
      actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role_policy" "this" {
  name   = "kong-audit-shipper"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.this.json
}
