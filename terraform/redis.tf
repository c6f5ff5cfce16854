# Dedup store: ElastiCache (Valkey or Redis OSS), TLS only, AUTH token from
# Secrets Manager. Skipped entirely when existing_redis_url is set.
#
# Its keys are the only record of what was shipped: CloudTrail Lake has no
# "do you have this id" call and is immutable. Lost keys mean Kong's whole
# retained trail (30 days by default) is shipped again, as duplicates that can
# never be deleted. Hence: no eviction (a full store refuses writes and the run
# stops, instead of forgetting marks), daily snapshots, a final snapshot, and
# prevent_destroy on the replication group, several of whose arguments
# (replication_group_id, engine, port, subnet group, encryption settings, ...)
# would otherwise replace it, empty, on the next apply.

# noeviction: a full Redis answers writes with an error (the run stops and
# says so) instead of deleting keys. Every key this program writes expires, so
# the volatile-* policies (ElastiCache's default is volatile-lru) would evict
# marks and claims alike.
resource "aws_elasticache_parameter_group" "this" {
  count = local.create_redis ? 1 : 0

  name        = "${var.name}-${replace(local.redis_parameter_group_family, ".", "-")}"
  family      = local.redis_parameter_group_family
  description = "${var.name} dedup store: never evict keys"

  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_elasticache_subnet_group" "this" {
  count = local.create_redis ? 1 : 0

  name        = var.name
  description = "${var.name} dedup store"
  subnet_ids  = local.redis_subnet_ids
}

resource "aws_security_group" "redis" {
  count = local.create_redis ? 1 : 0

  name_prefix = "${var.name}-redis-"
  description = "${var.name} dedup store: 6379 from the shipper Lambda only"
  vpc_id      = local.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_lambda" {
  count = local.create_redis ? 1 : 0

  security_group_id            = aws_security_group.redis[0].id
  description                  = "Redis/Valkey (TLS) from the ${var.name} Lambda"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.lambda[0].id
}

resource "aws_elasticache_replication_group" "this" {
  count = local.create_redis ? 1 : 0
  #checkov:skip=CKV2_AWS_50:Multi-AZ automatic failover is on whenever redis_num_cache_clusters > 1 (the default is 2); a deliberately single-node (test) group cannot fail over. Checkov does not evaluate the expression.

  replication_group_id = var.name
  description          = "${var.name} dedup store (claims, shipped markers, watermarks)"

  engine             = var.redis_engine
  engine_version     = var.redis_engine_version
  node_type          = var.redis_node_type
  num_cache_clusters = var.redis_num_cache_clusters
  port               = 6379

  subnet_group_name    = aws_elasticache_subnet_group.this[0].name
  security_group_ids   = [aws_security_group.redis[0].id]
  parameter_group_name = aws_elasticache_parameter_group.this[0].name

  automatic_failover_enabled = var.redis_num_cache_clusters > 1
  multi_az_enabled           = var.redis_num_cache_clusters > 1

  at_rest_encryption_enabled = true
  kms_key_id                 = local.kms_key_arn
  # TLS only. A group created with transit encryption enabled refuses
  # plain-text clients; transit_encryption_mode ("preferred") only exists to
  # migrate an existing group, so it is left unset. Clients use rediss://.
  transit_encryption_enabled = true
  auth_token                 = random_password.redis_auth_token[0].result
  # hashicorp/aws 6 wants the strategy spelled out whenever auth_token is set.
  # ROTATE keeps the old token valid until the next SET, so a running function
  # is not cut off while a new token is rolled out.
  auth_token_update_strategy = "ROTATE"

  auto_minor_version_upgrade = true
  snapshot_retention_limit   = var.redis_snapshot_retention_days
  snapshot_window            = var.redis_snapshot_window
  maintenance_window         = var.redis_maintenance_window
  apply_immediately          = var.redis_apply_immediately
  # Taken when the group is deleted (only possible once prevent_destroy is
  # lifted). A snapshot of this name must not exist yet: delete or rename an
  # older one first.
  final_snapshot_identifier = "${var.name}-final"

  lifecycle {
    # A plan that would delete or replace the dedup store fails here. To do it
    # on purpose, read "Replacing the dedup store" in docs/operations.md first.
    prevent_destroy = true

    precondition {
      # Zones, not subnets: two subnets in one zone cannot host a Multi-AZ group.
      condition     = var.redis_num_cache_clusters == 1 || length(local.redis_availability_zones) >= 2
      error_message = "Multi-AZ failover (redis_num_cache_clusters >= 2) needs subnets in at least two availability zones, and the dedup store's subnets (${join(", ", local.redis_subnet_ids)}) are all in ${join(", ", local.redis_availability_zones)}: add a subnet of another zone to redis_subnet_ids (or subnet_ids), or set redis_num_cache_clusters = 1 for a test stack."
    }
  }
}
