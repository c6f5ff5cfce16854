# Security group of the Lambda ENIs: no ingress at all, and egress only where
# the program talks to. Terraform removes the default allow-all egress rule of
# a new security group, so the rules below are the complete list.
# DNS needs no rule: security groups do not filter the VPC resolver (VPC+2).
#
# The AWS APIs are reached on 443 through a NAT gateway (aws_api_access = "nat"):
# CloudTrail Data, where PutAuditEvents goes, has no interface VPC endpoint.

resource "aws_security_group" "lambda" {
  count = local.in_vpc ? 1 : 0

  name_prefix = "${var.name}-lambda-"
  description = local.reads_konnect ? "${var.name} Lambda: no ingress; egress to the dedup store and HTTPS (Konnect, AWS APIs)" : "${var.name} Lambda: no ingress; egress to Kong Admin API, the dedup store and HTTPS (AWS APIs)"
  vpc_id      = local.vpc_id

  lifecycle {
    create_before_destroy = true

    precondition {
      condition     = local.reads_konnect || var.kong_admin_port == null || var.kong_admin_port == local.kong_admin_port
      error_message = "kong_admin_port is ${coalesce(var.kong_admin_port, 0)}, but kong_admin_api (${var.kong_admin_api}) is on port ${local.kong_admin_port}: the egress rule would block the function. Leave kong_admin_port unset (it follows the URL) or make the two agree."
    }
  }
}

resource "aws_vpc_security_group_egress_rule" "kong_admin" {
  for_each = local.reads_konnect || !local.in_vpc ? toset([]) : toset(var.kong_admin_cidrs)

  security_group_id = aws_security_group.lambda[0].id
  description       = "Kong Admin API at ${each.value}"
  ip_protocol       = "tcp"
  from_port         = local.kong_admin_port
  to_port           = local.kong_admin_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "redis_managed" {
  count = local.create_redis && local.in_vpc ? 1 : 0

  security_group_id            = aws_security_group.lambda[0].id
  description                  = "Dedup store (ElastiCache, TLS)"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.redis[0].id
}

resource "aws_vpc_security_group_egress_rule" "redis_existing" {
  for_each = local.create_redis || !local.in_vpc ? toset([]) : toset(var.redis_cidrs)

  security_group_id = aws_security_group.lambda[0].id
  description       = "Existing dedup store at ${each.value}"
  ip_protocol       = "tcp"
  from_port         = local.redis_port
  to_port           = local.redis_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each = local.in_vpc ? toset(var.https_egress_cidrs) : toset([])

  security_group_id = aws_security_group.lambda[0].id
  description       = local.reads_konnect ? "HTTPS to Konnect and the AWS APIs via ${each.value}" : "HTTPS to AWS APIs (Secrets Manager, SQS, CloudTrail Data, X-Ray) via ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}
