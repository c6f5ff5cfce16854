# One CloudWatch dashboard for the function: what each run shipped, how far behind it is, what it
# could not ship, the signatures' verdicts, the dead letters waiting, what reconcile found missing,
# and the duration of the invocations against their timeout. Its address: output dashboard_url.

variable "create_dashboard" {
  description = "Create the CloudWatch dashboard <name> (output dashboard_url). A dashboard beyond the account's first three costs a few dollars a month."
  type        = bool
  default     = true
  nullable    = false
}

locals {
  dashboard_period = var.schedule_period_seconds
  # One metric of the program's EMF record: [namespace, name, dimension, value, options].
  emf_metric = { for name in ["Read", "Shipped", "AlreadyShipped", "Held", "Retried", "Rejected", "Failed", "LagSeconds", "SignaturesValid", "SignaturesInvalid", "MissingEntries", "PartialEntries", "ReconcileFound", "ReconcilePending"] :
    name => [local.emf_namespace, name, "FunctionName", aws_lambda_function.this.function_name]
  }
  lambda_metric = { for name in ["Duration", "Invocations", "Errors", "Throttles"] :
    name => ["AWS/Lambda", name, "FunctionName", aws_lambda_function.this.function_name]
  }
  dead_letter_metric = { for name in ["ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"] :
    name => ["AWS/SQS", name, "QueueName", aws_sqs_queue.dead_letter.name]
  }
  console_host = {
    "aws"        = "console.aws.amazon.com"
    "aws-cn"     = "console.amazonaws.cn"
    "aws-us-gov" = "console.amazonaws-us-gov.com"
  }

  # A time series widget: one row of the grid (y), half its width (x = 0 or 12).
  dashboard_widgets = [
    {
      x = 0, y = 0, title = "Entries per run"
      metrics = [
        concat(local.emf_metric["Shipped"], [{ label = "Shipped" }]),
        concat(local.emf_metric["Read"], [{ label = "Read" }]),
        concat(local.emf_metric["AlreadyShipped"], [{ label = "Already shipped" }]),
      ]
      stat  = "Sum"
      extra = {}
    },
    {
      x       = 12, y = 0, title = "Lag: age of the oldest entry not shipped (s)"
      metrics = [concat(local.emf_metric["LagSeconds"], [{ label = "LagSeconds" }])]
      stat    = "Maximum"
      extra   = { annotations = { horizontal = [{ label = "lag alarm", value = local.lag_threshold_seconds }] } }
    },
    {
      x = 0, y = 6, title = "Not shipped: held, rejected, failed"
      metrics = [
        concat(local.emf_metric["Held"], [{ label = "Held by another run" }]),
        concat(local.emf_metric["Rejected"], [{ label = "Rejected (dead-lettered)" }]),
        concat(local.emf_metric["Failed"], [{ label = "Failed (next run)" }]),
        concat(local.emf_metric["Retried"], [{ label = "Retried" }]),
      ]
      stat  = "Sum"
      extra = {}
    },
    {
      x = 12, y = 6, title = "Kong signatures"
      metrics = [
        concat(local.emf_metric["SignaturesValid"], [{ label = "Valid" }]),
        concat(local.emf_metric["SignaturesInvalid"], [{ label = "Invalid" }]),
      ]
      stat  = "Sum"
      extra = {}
    },
    {
      x = 0, y = 12, title = "Dead-letter queue"
      metrics = [
        concat(local.dead_letter_metric["ApproximateNumberOfMessagesVisible"], [{ label = "Letters waiting" }]),
        concat(local.dead_letter_metric["ApproximateAgeOfOldestMessage"], [{ label = "Age of the oldest (s)", yAxis = "right" }]),
      ]
      stat  = "Maximum"
      extra = {}
    },
    {
      x = 12, y = 12, title = "Reconcile: the destination against Kong"
      metrics = [
        concat(local.emf_metric["MissingEntries"], [{ label = "Missing" }]),
        concat(local.emf_metric["PartialEntries"], [{ label = "Partial" }]),
        concat(local.emf_metric["ReconcilePending"], [{ label = "Pending (settling)" }]),
        concat(local.emf_metric["ReconcileFound"], [{ label = "Found", yAxis = "right" }]),
      ]
      stat  = "Maximum"
      extra = {}
    },
    {
      x = 0, y = 18, title = "Duration against the timeout (ms)"
      metrics = [
        concat(local.lambda_metric["Duration"], [{ label = "Longest", stat = "Maximum" }]),
        concat(local.lambda_metric["Duration"], [{ label = "Average", stat = "Average" }]),
      ]
      stat  = "Maximum"
      extra = { annotations = { horizontal = [{ label = "timeout", value = var.lambda_timeout * 1000 }] } }
    },
    {
      x = 12, y = 18, title = "Invocations"
      metrics = [
        concat(local.lambda_metric["Invocations"], [{ label = "Invocations" }]),
        concat(local.lambda_metric["Errors"], [{ label = "Errors" }]),
        concat(local.lambda_metric["Throttles"], [{ label = "Throttles" }]),
      ]
      stat  = "Sum"
      extra = {}
    },
  ]
}

resource "aws_cloudwatch_dashboard" "this" {
  count = var.create_dashboard ? 1 : 0

  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [for w in local.dashboard_widgets : {
      type   = "metric"
      x      = w.x
      y      = w.y
      width  = 12
      height = 6
      properties = merge({
        title   = w.title
        view    = "timeSeries"
        region  = local.region
        stat    = w.stat
        period  = local.dashboard_period
        metrics = w.metrics
      }, w.extra)
    }]
  })
}
