# Inputs of the redrive module. Every name that carries a quantity ends in its unit (_s, _per_s).

variable "project_id" {
  type        = string
  description = "The project that hosts redrive: its functions, signals topic, redrive queue, source bucket and service accounts."

  validation {
    condition     = can(regex("^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "The project_id must be a project id such as acme-prod (or domain:acme-prod), not a project number."
  }
}

variable "region" {
  type        = string
  description = "The region of the functions, the redrive queue and the Pub/Sub trigger, for example europe-west1."

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "The region must be a Google Cloud region id such as europe-west1."
  }
}

variable "name_prefix" {
  type        = string
  description = "The prefix of every resource name the module creates (functions, queue, topic, service accounts, custom roles)."
  default     = "redrive"

  validation {
    # Service account ids are 6-30 characters: the longest suffix added is "-invoker".
    condition     = can(regex("^[a-z][a-z0-9-]{0,20}[a-z0-9]$", var.name_prefix))
    error_message = "The name_prefix must be 2-22 lower-case letters, digits or hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "labels" {
  type        = map(string)
  description = "The labels added to every labelled resource the module creates (functions, bucket, repository, topics, subscriptions, notification channel, alert policies, dashboard)."
  default     = {}
  nullable    = false
}

variable "target_queues" {
  type        = list(string)
  description = "The full names (projects/P/locations/L/queues/Q) of the Cloud Tasks queues whose failed tasks redrive may force-run; it becomes REDRIVE_ALLOWED_QUEUES and receives the only task-level grants. The names key for_each and count, so they must be known at plan time: build them from known arguments (\"projects/$${var.project_id}/locations/$${var.region}/queues/$${google_cloud_tasks_queue.x.name}\"), never from an apply-time attribute such as google_cloud_tasks_queue.x.id."

  validation {
    condition     = length(var.target_queues) > 0
    error_message = "Give at least one target queue: redrive acts on nothing else."
  }

  validation {
    condition = alltrue([
      for q in var.target_queues :
      can(regex("^projects/[A-Za-z0-9:.-]{1,100}/locations/[A-Za-z0-9-]{1,63}/queues/[A-Za-z0-9-]{1,100}$", q))
    ])
    error_message = "Each target queue must be a full queue name projects/P/locations/L/queues/Q (no wildcards: every queue gets its own grant)."
  }
}

variable "service_map" {
  type        = map(list(string))
  description = "A map from a Cloud Run service full name (projects/P/locations/L/services/S) to the full names of the target queues that feed it; it becomes REDRIVE_SERVICE_MAP and drives deploy sweeps and the revision fix check. Like target_queues, its keys must be known at plan time (names built from known arguments, not google_cloud_run_v2_service.x.id)."
  default     = {}
  nullable    = false

  validation {
    condition = alltrue([
      for service, queues in var.service_map :
      can(regex("^projects/[A-Za-z0-9:.-]+/locations/[a-z0-9-]+/services/[a-z0-9-]+$", service)) && length(queues) > 0 && alltrue([
        for q in queues : can(regex("^projects/[A-Za-z0-9:.-]{1,100}/locations/[A-Za-z0-9-]{1,63}/queues/[A-Za-z0-9-]{1,100}$", q))
      ])
    ])
    error_message = "Each service_map key must be projects/P/locations/L/services/S and each value a non-empty list of full queue names."
  }
}

variable "settings" {
  type = object({
    tasks_api        = optional(string, "v2beta3")
    response_view    = optional(string, "BASIC")
    fix_check        = optional(string, "revision")
    fix_deployed_at  = optional(string)
    max_signal_age_s = optional(number, 86400)
    retry_deadline_s = optional(number, 30)
    dry_run          = optional(bool, false)
    # A task whose own retry is due within this margin is not forced (SKIPPED_RETRY_DUE).
    retry_due_margin_s = optional(number, 60)
    clock_skew_s       = optional(number, 30)
    rpc_timeout_s      = optional(number, 20)
    # PERMISSION_DENIED is delivered again for this long after an instance starts: the grants
    # this module creates with the functions may still be propagating.
    permission_grace_s = optional(number, 600)
  })
  description = "The behaviour of redrive: Cloud Tasks API version, task view (FULL adds cloudtasks.tasks.fullView to the grants), fix check strategy (revision, static with fix_deployed_at, or none), stale-signal age, transient-fault retry budget, dry run, the margin before a task's own retry within which it is not forced, the clock skew tolerated (times further ahead are refused), the timeout of one API call (a timed-out RunTask is judged after twice that) and how long after an instance starts a missing permission is delivered again rather than acknowledged (grants propagating on a first deploy)."
  default     = {}
  nullable    = false

  validation {
    condition     = contains(["v2beta3", "v2"], var.settings.tasks_api)
    error_message = "The settings.tasks_api must be v2beta3 or v2."
  }

  validation {
    condition     = contains(["BASIC", "FULL"], var.settings.response_view)
    error_message = "The settings.response_view must be BASIC or FULL."
  }

  validation {
    condition     = contains(["revision", "static", "none"], var.settings.fix_check)
    error_message = "The settings.fix_check must be revision, static or none."
  }

  validation {
    # timeadd() accepts exactly RFC 3339 timestamps, the format redrive parses.
    condition     = var.settings.fix_check != "static" || can(timeadd(var.settings.fix_deployed_at, "0s"))
    error_message = "The settings.fix_check static needs settings.fix_deployed_at as an RFC 3339 time such as 2026-11-29T08:00:00Z."
  }

  validation {
    condition     = var.settings.max_signal_age_s > 0 && var.settings.retry_deadline_s >= 0
    error_message = "The settings.max_signal_age_s must be positive and settings.retry_deadline_s not negative."
  }

  validation {
    condition = (
      var.settings.retry_due_margin_s >= 0 && var.settings.retry_due_margin_s <= 3600 &&
      var.settings.clock_skew_s >= 0 && var.settings.clock_skew_s <= 3600 &&
      var.settings.rpc_timeout_s >= 0.1 && var.settings.rpc_timeout_s <= 300 &&
      var.settings.permission_grace_s >= 0 && var.settings.permission_grace_s <= 3600
    )
    error_message = "The settings.retry_due_margin_s, settings.clock_skew_s and settings.permission_grace_s must be from 0 to 3600, settings.rpc_timeout_s from 0.1 to 300."
  }
}

variable "redrive_queue" {
  type = object({
    name                      = optional(string)
    max_dispatches_per_s      = optional(number, 0.8)
    max_concurrent_dispatches = optional(number, 2)
    max_attempts              = optional(number, 20)
    max_retry_duration_s      = optional(number, 86400)
    min_backoff_s             = optional(number, 10)
    max_backoff_s             = optional(number, 600)
    max_doublings             = optional(number, 5)
    log_sampling_ratio        = optional(number, 1)
  })
  description = "The redrive queue that throttles RunTask globally: its name (default NAME_PREFIX-jobs), its dispatch rate, which should stay below the project's RunTask quota (about 60 per minute): the default 0.8 per second leaves room for the queue's burst and for run_job latency jitter, which at exactly 1 per second put up to 77 RunTask calls in one 60-second window in the storm test, its concurrency, its retry policy for failed run_job calls and its task-log sampling ratio."
  default     = {}
  nullable    = false

  validation {
    condition     = var.redrive_queue.max_dispatches_per_s > 0 && var.redrive_queue.max_dispatches_per_s <= 500
    error_message = "The redrive_queue.max_dispatches_per_s must be in (0, 500]; keep it at or below the RunTask quota."
  }

  validation {
    condition     = var.redrive_queue.max_concurrent_dispatches >= 1 && var.redrive_queue.max_concurrent_dispatches <= 5000
    error_message = "The redrive_queue.max_concurrent_dispatches must be between 1 and 5000."
  }

  validation {
    condition     = var.redrive_queue.max_attempts == -1 || var.redrive_queue.max_attempts >= 1
    error_message = "The redrive_queue.max_attempts must be -1 (unlimited) or at least 1."
  }

  validation {
    condition = (
      var.redrive_queue.min_backoff_s > 0 &&
      var.redrive_queue.min_backoff_s <= var.redrive_queue.max_backoff_s &&
      var.redrive_queue.max_retry_duration_s >= 0 &&
      var.redrive_queue.max_doublings >= 0
    )
    error_message = "The redrive_queue backoff must satisfy 0 < min_backoff_s <= max_backoff_s, with max_retry_duration_s and max_doublings not negative."
  }

  validation {
    condition     = var.redrive_queue.log_sampling_ratio >= 0 && var.redrive_queue.log_sampling_ratio <= 1
    error_message = "The redrive_queue.log_sampling_ratio must be between 0 and 1."
  }

  validation {
    condition     = var.redrive_queue.name == null || can(regex("^[A-Za-z0-9-]{1,100}$", var.redrive_queue.name))
    error_message = "The redrive_queue.name must be a queue id: letters, digits and hyphens, at most 100."
  }
}

variable "runtime" {
  type        = string
  description = "The Cloud Functions Python runtime of both functions."
  default     = "python312"

  validation {
    condition     = can(regex("^python31[1-3]$", var.runtime))
    error_message = "The runtime must be python311, python312 or python313 (redrive needs Python 3.11 or later)."
  }
}

variable "signal_function" {
  type = object({
    timeout_s                        = optional(number, 540)
    sweep_budget_s                   = optional(number, 480)
    available_memory                 = optional(string, "512Mi")
    available_cpu                    = optional(string)
    min_instance_count               = optional(number, 0)
    max_instance_count               = optional(number, 10)
    max_instance_request_concurrency = optional(number, 1)
  })
  description = "The handle_signal function (Pub/Sub trigger): its timeout, the time a deploy sweep may spend in one invocation (REDRIVE_SWEEP_BUDGET_S, kept below the timeout so a sweep stops cleanly and is delivered again), its memory, its vCPUs (null: the platform's default for the memory), its minimum and maximum instance counts and the requests one instance serves at once (more than 1 needs at least one vCPU)."
  default     = {}
  nullable    = false

  validation {
    condition     = var.signal_function.timeout_s >= 60 && var.signal_function.timeout_s <= 540
    error_message = "The signal_function.timeout_s must be between 60 and 540 (the event-driven function limit)."
  }

  validation {
    condition     = var.signal_function.sweep_budget_s > 0 && var.signal_function.sweep_budget_s <= var.signal_function.timeout_s - 30
    error_message = "The signal_function.sweep_budget_s must be positive and at least 30 seconds below signal_function.timeout_s."
  }

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi|M|G)$", var.signal_function.available_memory))
    error_message = "The signal_function.available_memory must look like 256Mi or 1Gi."
  }

  validation {
    condition = (
      var.signal_function.max_instance_count >= 1 &&
      var.signal_function.min_instance_count >= 0 &&
      var.signal_function.min_instance_count <= var.signal_function.max_instance_count &&
      var.signal_function.max_instance_request_concurrency >= 1 &&
      var.signal_function.max_instance_request_concurrency <= 1000
    )
    error_message = "The signal_function needs 0 <= min_instance_count <= max_instance_count, max_instance_count >= 1 and max_instance_request_concurrency between 1 and 1000."
  }

  validation {
    condition     = var.signal_function.available_cpu == null || can(regex("^[0-9]+(\\.[0-9]+)?$", coalesce(var.signal_function.available_cpu, "1")))
    error_message = "The signal_function.available_cpu must be a number of vCPUs such as 0.5, 1 or 2."
  }

  validation {
    # Cloud Run refuses concurrency above 1 on less than one vCPU.
    condition     = var.signal_function.max_instance_request_concurrency == 1 || try(tonumber(var.signal_function.available_cpu) >= 1, false)
    error_message = "The signal_function.max_instance_request_concurrency above 1 needs available_cpu of at least 1 (Cloud Run refuses concurrency on a fraction of a vCPU)."
  }
}

variable "job_function" {
  type = object({
    timeout_s                        = optional(number, 120)
    available_memory                 = optional(string, "256Mi")
    available_cpu                    = optional(string)
    min_instance_count               = optional(number, 0)
    max_instance_count               = optional(number, 5)
    max_instance_request_concurrency = optional(number, 1)
  })
  description = "The run_job function (private HTTP, called by the redrive queue): its timeout, which is also the dispatch deadline of every redrive job (REDRIVE_JOB_DEADLINE_S: without it Cloud Tasks would cut a job at its 10-minute default), its memory, its vCPUs (null: the platform's default for the memory), its minimum and maximum instance counts and the requests one instance serves at once (more than 1 needs at least one vCPU)."
  default     = {}
  nullable    = false

  validation {
    # The jobs' dispatch deadline is this timeout, and Cloud Tasks accepts 15 s to 30 min.
    condition     = var.job_function.timeout_s >= 15 && var.job_function.timeout_s <= 1800 && floor(var.job_function.timeout_s) == var.job_function.timeout_s
    error_message = "The job_function.timeout_s must be whole seconds from 15 to 1800: it is also the redrive jobs' dispatch deadline, which Cloud Tasks bounds to 15 s - 30 min."
  }

  validation {
    condition     = var.job_function.available_cpu == null || can(regex("^[0-9]+(\\.[0-9]+)?$", coalesce(var.job_function.available_cpu, "1")))
    error_message = "The job_function.available_cpu must be a number of vCPUs such as 0.5, 1 or 2."
  }

  validation {
    # Cloud Run refuses concurrency above 1 on less than one vCPU.
    condition     = var.job_function.max_instance_request_concurrency == 1 || try(tonumber(var.job_function.available_cpu) >= 1, false)
    error_message = "The job_function.max_instance_request_concurrency above 1 needs available_cpu of at least 1 (Cloud Run refuses concurrency on a fraction of a vCPU)."
  }

  validation {
    condition     = var.job_function.min_instance_count >= 0 && var.job_function.min_instance_count <= var.job_function.max_instance_count
    error_message = "The job_function.min_instance_count must be between 0 and max_instance_count."
  }

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi|M|G)$", var.job_function.available_memory))
    error_message = "The job_function.available_memory must look like 256Mi or 1Gi."
  }

  validation {
    condition     = var.job_function.max_instance_count >= 1 && var.job_function.max_instance_request_concurrency >= 1
    error_message = "The job_function.max_instance_count and max_instance_request_concurrency must be at least 1."
  }
}

variable "source_dir" {
  type        = string
  description = "The folder that holds redrive's main.py, requirements.txt, src/ and deploy-files.txt; only the files deploy-files.txt lists are archived (the function runtime: an allowlist, so virtual environments, operator tools, the emulator, caches and state files never ship). Null means the repository root, one level above this module."
  default     = null
}

variable "source_bucket" {
  type = object({
    name              = optional(string)
    location          = optional(string)
    force_destroy     = optional(bool, false)
    access_log_bucket = optional(string)
  })
  description = "The bucket that stores the function source archives (uniform access, versioning, public access prevented): its name (default PROJECT-NAME_PREFIX-source), location (default the region), whether destroy may delete its objects, and an optional bucket for its access logs."
  default     = {}
  nullable    = false

  validation {
    condition     = var.source_bucket.name == null || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.source_bucket.name))
    error_message = "The source_bucket.name must be a valid bucket name: 3-63 lower-case letters, digits, dots, hyphens or underscores."
  }
}

variable "kms_key_name" {
  type        = string
  description = "An optional Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K, in the region) that encrypts the topics, the source bucket, the Artifact Registry repository and both functions; the module grants cloudkms.cryptoKeyEncrypterDecrypter on it to the service agents that use it (see kms_service_agent_grants). Null uses Google-managed keys."
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "The kms_key_name must be a full crypto key name projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }
}

variable "signals_topic" {
  type = object({
    create              = optional(bool, true)
    name                = optional(string)
    message_retention_s = optional(number, 86400)
  })
  description = "The Pub/Sub topic that feeds handle_signal: whether the module creates it (false uses an existing topic of that name in project_id), its name (default NAME_PREFIX-signals) and how long it keeps messages."
  default     = {}
  nullable    = false

  validation {
    condition     = var.signals_topic.name == null || can(regex("^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$", var.signals_topic.name))
    error_message = "The signals_topic.name must be a Pub/Sub topic id (3-255 characters, starting with a letter)."
  }

  validation {
    condition     = var.signals_topic.message_retention_s >= 600 && var.signals_topic.message_retention_s <= 2678400
    error_message = "The signals_topic.message_retention_s must be between 600 and 2678400 (31 days)."
  }
}

variable "notification_channel" {
  type = object({
    enabled      = optional(bool, true)
    display_name = optional(string)
  })
  description = "A Cloud Monitoring notification channel of type pubsub that publishes alert incidents to the signals topic, with the publish grant for the Monitoring notification service agent; attach it to your own alert policies on the target queues."
  default     = {}
  nullable    = false
}

variable "attempt_failure_alert" {
  type = object({
    enabled                   = optional(bool, false)
    notification_rate_limit_s = optional(number, 300)
    auto_close_s              = optional(number, 1800)
  })
  description = "A log-based alert policy on failed Cloud Tasks attempts of the target queues (in project_id) that notifies the pubsub channel, with the task name extracted into its documentation as task=NAME; Monitoring sends at most one notification per rate-limit period, so it is a trigger to look at the queue, not a per-task feed."
  default     = {}
  nullable    = false

  validation {
    condition     = var.attempt_failure_alert.notification_rate_limit_s >= 300 && var.attempt_failure_alert.auto_close_s >= 1800
    error_message = "The attempt_failure_alert.notification_rate_limit_s must be at least 300 and auto_close_s at least 1800 (Monitoring minimums)."
  }
}

variable "attempt_failure_sink" {
  type = object({
    enabled = optional(bool, true)
  })
  description = "A log sink that publishes every failed Cloud Tasks attempt of the target queues in project_id to the signals topic (the per-task feed), with the publish grant for its writer identity; the target queues need task-operation logging on."
  default     = {}
  nullable    = false
}

variable "deploy_subscription" {
  type = object({
    enabled        = optional(bool, false)
    topic          = optional(string, "cloud-builds")
    create_topic   = optional(bool, true)
    filter         = optional(string, "attributes.status = \"SUCCESS\"")
    ack_deadline_s = optional(number)
  })
  description = "A push subscription that delivers deploy notifications (by default the cloud-builds topic, short id in project_id or full projects/P/topics/T, filtered to successful builds) to handle_signal with an OIDC token of the function service account; the acknowledgement deadline defaults to the function timeout. With create_topic (the default) the module creates the topic in project_id (Cloud Build publishes to cloud-builds only when it exists); set it to false when the topic exists already or lives in another project."
  default     = {}
  nullable    = false

  validation {
    condition     = can(regex("^(projects/[^/]+/topics/)?[A-Za-z][A-Za-z0-9._~%+-]{2,254}$", var.deploy_subscription.topic))
    error_message = "The deploy_subscription.topic must be a topic id or projects/P/topics/T."
  }

  validation {
    condition     = var.deploy_subscription.ack_deadline_s == null || (coalesce(var.deploy_subscription.ack_deadline_s, 10) >= 10 && coalesce(var.deploy_subscription.ack_deadline_s, 600) <= 600)
    error_message = "The deploy_subscription.ack_deadline_s must be between 10 and 600."
  }
}

variable "outcome_metric" {
  type = object({
    enabled = optional(bool, true)
    name    = optional(string)
    wait_s  = optional(number, 120)
  })
  description = "A log-based counter of redrive's decisions (the jsonPayload.event=\"redrive.outcome\" lines, one per decision; signal and sweep summaries are not counted) labelled by outcome and function (default name NAME_PREFIX/outcomes, that is logging.googleapis.com/user/NAME_PREFIX/outcomes), and how long the alerts and the dashboard wait after creating it (Monitoring answers \"Cannot find metric(s)\" for a few minutes after a log-based metric is created)."
  default     = {}
  nullable    = false
}

variable "outcome_alert" {
  type = object({
    enabled               = optional(bool, false)
    outcomes              = optional(list(string), ["FAILED", "PERMISSION_DENIED", "HALTED"])
    notification_channels = optional(list(string), [])
    alignment_period_s    = optional(number, 300)
    auto_close_s          = optional(number, 86400)
  })
  description = "An alert policy that fires when the outcome metric counts any of the given outcomes (default FAILED, PERMISSION_DENIED and HALTED: a bulk re-drive whose canaries failed again), sent to the given notification channel ids (at least one when enabled); needs outcome_metric enabled, and is created after the metric has had time to exist (outcome_metric.wait_s)."
  default     = {}
  nullable    = false

  validation {
    condition     = !var.outcome_alert.enabled || length(var.outcome_alert.notification_channels) > 0
    error_message = "The outcome_alert needs at least one notification channel id when enabled: an alert nobody receives is no alert."
  }

  validation {
    condition = length(var.outcome_alert.outcomes) > 0 && alltrue([
      for o in var.outcome_alert.outcomes : can(regex("^[A-Z_]+$", o))
    ])
    error_message = "The outcome_alert.outcomes must be a non-empty list of outcome names such as FAILED."
  }

  validation {
    condition     = var.outcome_alert.alignment_period_s >= 60 && var.outcome_alert.auto_close_s >= 1800
    error_message = "The outcome_alert.alignment_period_s must be at least 60 and auto_close_s at least 1800."
  }
}

variable "build_service_account" {
  type = object({
    create = optional(bool, true)
    email  = optional(string)
  })
  description = "The service account Cloud Build runs both functions' builds as (build_config.service_account). By default the module creates NAME_PREFIX-build; give email (with create = false) to use an existing one. Either way the module grants it exactly what a build needs: roles/logging.logWriter on the project (build logs), roles/storage.objectViewer on the source bucket (the archive) and roles/artifactregistry.writer on the functions' repository (the image). New projects' default Cloud Build account may lack these."
  default     = {}
  nullable    = false

  validation {
    condition     = var.build_service_account.create != (var.build_service_account.email != null)
    error_message = "Set build_service_account.email exactly when build_service_account.create is false."
  }
}

variable "artifact_repository" {
  type = object({
    create               = optional(bool, true)
    name                 = optional(string)
    id                   = optional(string)
    keep_recent_versions = optional(number, 10)
  })
  description = "The Artifact Registry Docker repository the function images are pushed to (build_config.docker_repository). By default the module creates NAME_PREFIX-functions in the region (encrypted with kms_key_name when set, keeping the most recent keep_recent_versions versions of each image); with create = false give the id projects/P/locations/L/repositories/R of an existing one."
  default     = {}
  nullable    = false

  validation {
    condition     = var.artifact_repository.create || can(regex("^projects/[^/]+/locations/[^/]+/repositories/[^/]+$", coalesce(var.artifact_repository.id, "-")))
    error_message = "With artifact_repository.create = false give artifact_repository.id as projects/P/locations/L/repositories/R."
  }

  validation {
    condition     = var.artifact_repository.keep_recent_versions >= 1
    error_message = "The artifact_repository.keep_recent_versions must be at least 1."
  }
}

variable "kms_service_agent_grants" {
  type        = bool
  description = "With kms_key_name set, whether the module grants roles/cloudkms.cryptoKeyEncrypterDecrypter on the key to the service agents that encrypt with it: Pub/Sub (topics), Cloud Storage (bucket), Artifact Registry (repository), Cloud Functions, Cloud Run and Eventarc (functions). Set false when the key's IAM is managed elsewhere."
  default     = true
  nullable    = false
}

variable "vpc_access" {
  type = object({
    connector = optional(string)
    egress    = optional(string, "PRIVATE_RANGES_ONLY")
  })
  description = "An optional Serverless VPC Access connector (projects/P/locations/L/connectors/C) both functions send egress through, and which egress goes there (PRIVATE_RANGES_ONLY or ALL_TRAFFIC)."
  default     = {}
  nullable    = false

  validation {
    condition     = var.vpc_access.connector == null || can(regex("^projects/[^/]+/locations/[^/]+/connectors/[^/]+$", coalesce(var.vpc_access.connector, "-")))
    error_message = "The vpc_access.connector must be projects/P/locations/L/connectors/C."
  }

  validation {
    condition     = contains(["PRIVATE_RANGES_ONLY", "ALL_TRAFFIC"], var.vpc_access.egress)
    error_message = "The vpc_access.egress must be PRIVATE_RANGES_ONLY or ALL_TRAFFIC."
  }
}

variable "service_agents" {
  type = object({
    eventarc             = optional(bool, true)
    pubsub_token_creator = optional(bool, false)
    propagation_wait_s   = optional(number, 60)
  })
  description = "Grants to Google's service agents that a fresh project may not have in time: roles/eventarc.serviceAgent for the Eventarc service agent (the known \"Permission denied while using the Eventarc Service Agent\" when the trigger is created in the same apply as the API), and, for projects that enabled Pub/Sub before 2021-04-08, roles/iam.serviceAccountTokenCreator for the Pub/Sub service agent on the runtime account only (to mint the push and trigger OIDC tokens). The functions, the trigger and the log sink are created propagation_wait_s seconds after every grant they need."
  default     = {}
  nullable    = false

  validation {
    condition     = var.service_agents.propagation_wait_s >= 0 && var.service_agents.propagation_wait_s <= 600
    error_message = "The service_agents.propagation_wait_s must be between 0 and 600."
  }
}

variable "dead_letter" {
  type = object({
    enabled               = optional(bool, true)
    max_delivery_attempts = optional(number, 10)
    retention_s           = optional(number, 604800)
  })
  description = "A dead-letter topic for redrive's own signal subscriptions (NAME_PREFIX-signals-dead-letter), a pull subscription that keeps what reaches it for retention_s (a dead-letter topic without a subscription loses messages), the Pub/Sub service agent's publisher and subscriber grants, and the dead-letter policy on the module's deploy subscription. The Eventarc trigger's own subscription is created by Eventarc: the trigger_dead_letter_commands output sets the same policy there."
  default     = {}
  nullable    = false

  validation {
    condition     = var.dead_letter.max_delivery_attempts >= 5 && var.dead_letter.max_delivery_attempts <= 100
    error_message = "The dead_letter.max_delivery_attempts must be between 5 and 100 (Pub/Sub's bounds)."
  }

  validation {
    condition     = var.dead_letter.retention_s >= 600 && var.dead_letter.retention_s <= 604800
    error_message = "The dead_letter.retention_s must be between 600 and 604800 (7 days, a subscription's maximum)."
  }
}

variable "pipeline_alerts" {
  type = object({
    enabled               = optional(bool, false)
    notification_channels = optional(list(string), [])
    auto_close_s          = optional(number, 86400)
    signal_errors = optional(object({
      enabled   = optional(bool, true)
      threshold = optional(number, 0)
      window_s  = optional(number, 300)
    }), {})
    signal_backlog = optional(object({
      enabled    = optional(bool, true)
      max_age_s  = optional(number, 1800)
      duration_s = optional(number, 300)
    }), {})
    job_failures = optional(object({
      enabled   = optional(bool, true)
      threshold = optional(number, 5)
      window_s  = optional(number, 600)
    }), {})
    invalid_signals = optional(object({
      enabled   = optional(bool, true)
      threshold = optional(number, 20)
      window_s  = optional(number, 600)
    }), {})
    dead_letters = optional(object({
      enabled = optional(bool, true)
    }), {})
  })
  description = "Alert policies on the pipeline itself, sent to notification_channels (at least one when enabled): handle_signal errors (5xx answers above threshold in window_s), the age of the oldest unacknowledged signal on the trigger subscription (above max_age_s for duration_s), failed attempts of the redrive queue (above threshold in window_s), INVALID_SIGNAL decisions (above threshold in window_s) and signals that reached the dead-letter subscription. HALTED re-drives are in features, parked tasks in parking."
  default     = {}
  nullable    = false

  validation {
    condition     = !var.pipeline_alerts.enabled || length(var.pipeline_alerts.notification_channels) > 0
    error_message = "The pipeline_alerts need at least one notification channel id when enabled."
  }

  validation {
    condition = alltrue([
      var.pipeline_alerts.signal_errors.window_s >= 60,
      var.pipeline_alerts.job_failures.window_s >= 60,
      var.pipeline_alerts.invalid_signals.window_s >= 60,
      var.pipeline_alerts.signal_backlog.max_age_s >= 60,
      var.pipeline_alerts.auto_close_s >= 1800,
    ])
    error_message = "The pipeline_alerts windows and max_age_s must be at least 60 seconds and auto_close_s at least 1800."
  }
}

variable "dashboard" {
  type = object({
    enabled      = optional(bool, true)
    display_name = optional(string)
  })
  description = "A Cloud Monitoring dashboard of the pipeline: outcomes over time by outcome, re-drives and the redrive queue's depth, its attempts by response code, RunTask calls against the quota, the oldest unacknowledged signal, dead letters, and both functions' errors and latency (display name default \"redrive (NAME_PREFIX)\"); needs outcome_metric."
  default     = {}
  nullable    = false
}

variable "recreate" {
  type = object({
    enabled               = optional(bool, false)
    method                = optional(string, "auto")
    queue_methods         = optional(map(string), {})
    task_service_accounts = optional(list(string), [])
  })
  description = "Re-create re-drives (beyond the RunTask quota a bulk re-drive re-creates each failed task as a new task due now and deletes the original): whether they are enabled (off: every re-drive uses RunTask, and none of the grants below exist), the method of bulk re-drives (auto: RunTask while the work fits the quota, else re-create; or run, or recreate), per-queue methods by full queue name (run for a target that de-duplicates on the task name), and the service accounts whose OIDC/OAuth tokens the target queues' tasks carry (the runtime gets actAs on each, which creating a copy with that token needs; emails known at plan time, built from account ids rather than read from a resource's computed email)."
  default     = {}
  nullable    = false

  validation {
    condition     = contains(["auto", "run", "recreate"], var.recreate.method) && alltrue([for m in values(var.recreate.queue_methods) : contains(["auto", "run", "recreate"], m)])
    error_message = "The recreate.method and every recreate.queue_methods value must be auto, run or recreate."
  }

  validation {
    condition     = alltrue([for q in keys(var.recreate.queue_methods) : can(regex("^projects/[^/]+/locations/[^/]+/queues/[^/]+$", q))])
    error_message = "The recreate.queue_methods keys must be full queue names projects/P/locations/L/queues/Q."
  }

  validation {
    condition     = alltrue([for a in var.recreate.task_service_accounts : can(regex("^[^@]+@[^@]+$", a))])
    error_message = "The recreate.task_service_accounts must be service account emails."
  }
}

variable "parking" {
  type = object({
    enabled         = optional(bool, false)
    patrol_schedule = optional(string, "*/5 * * * *")
    margin_s        = optional(number, 30)
    before_expiry_s = optional(number, 86400)
    warn_s          = optional(number, 604800)
    # Restoring creates the original task again, with its OIDC/OAuth token.
    task_service_accounts = optional(list(string), [])
    # To pipeline_alerts' channels, with pipeline_alerts enabled.
    alerts = optional(object({
      parked = optional(object({
        enabled   = optional(bool, true)
        threshold = optional(number, 0)
        window_s  = optional(number, 300)
      }), {})
      expiring = optional(object({
        enabled  = optional(bool, true)
        window_s = optional(number, 1800)
      }), {})
      not_paused = optional(object({
        enabled                   = optional(bool, true)
        notification_rate_limit_s = optional(number, 3600)
      }), {})
    }), {})
  })
  description = "Parking (off by default): a task whose next attempt would be its last, or that nears Cloud Tasks' 31-day retention limit, and whose fix is not live is moved into the parking queue NAME_PREFIX-parking (REDRIVE_PARKING_QUEUE: kept paused, pause it once after the first apply with the parking_queue_pause_command output) as a copy that never runs by itself, and restored into its origin queue by a deploy that fixes it or by redrive parked restore. With it come the grants parking and restoring need, a Cloud Scheduler job NAME_PREFIX-patrol that publishes a patrol ({\"patrol\": {}}: park what signals missed, count the parked tasks, check the parking queue is paused) to the signals topic on patrol_schedule (unix-cron, UTC; every 5 minutes by default), the margins REDRIVE_PARK_MARGIN_S (margin_s), REDRIVE_PARK_BEFORE_EXPIRY_S (before_expiry_s) and REDRIVE_PARKED_WARN_S (warn_s), and actAs on task_service_accounts (the accounts whose OIDC/OAuth tokens the target queues' tasks carry: a restored task carries the original's token; the same emails as recreate.task_service_accounts, granted once when both list them), two log-based metrics of the patrol's census of the parking queue (NAME_PREFIX/parked, the parked copies, and NAME_PREFIX/parked_expiring, those within warn_s of the retention limit) on the dashboard, and three alerts to pipeline_alerts' channels when pipeline_alerts is enabled: PARKED decisions above alerts.parked.threshold in alerts.parked.window_s (any, by default), parked copies near the retention limit in a patrol of the last alerts.expiring.window_s, and a patrol that found the parking queue not PAUSED (at most one notification per alerts.not_paused.notification_rate_limit_s)."
  default     = {}
  nullable    = false

  validation {
    condition     = can(regex("^[0-9A-Za-z*/,-]+( +[0-9A-Za-z*/,-]+){4}$", trimspace(var.parking.patrol_schedule)))
    error_message = "The parking.patrol_schedule must be a unix-cron schedule of five fields, such as */5 * * * * (every five minutes)."
  }

  validation {
    # The ranges redrive.core.config accepts for REDRIVE_PARK_MARGIN_S, REDRIVE_PARK_BEFORE_EXPIRY_S
    # and REDRIVE_PARKED_WARN_S (an instance with another value would not start).
    condition = (
      var.parking.margin_s >= 0 && var.parking.margin_s <= 86400 &&
      var.parking.before_expiry_s >= 0 && var.parking.before_expiry_s <= 2592000 &&
      var.parking.warn_s >= 0 && var.parking.warn_s <= 2592000
    )
    error_message = "The parking.margin_s must be from 0 to 86400, parking.before_expiry_s and parking.warn_s from 0 to 2592000 (30 days): the ranges redrive accepts."
  }

  validation {
    condition     = alltrue([for a in var.parking.task_service_accounts : can(regex("^[^@]+@[^@]+$", a))])
    error_message = "The parking.task_service_accounts must be service account emails."
  }

  validation {
    condition = (
      var.parking.alerts.parked.threshold >= 0 &&
      var.parking.alerts.parked.window_s >= 60 &&
      var.parking.alerts.expiring.window_s >= 300 && var.parking.alerts.expiring.window_s <= 86400 &&
      var.parking.alerts.not_paused.notification_rate_limit_s >= 300
    )
    error_message = "The parking.alerts need parked.threshold >= 0, parked.window_s >= 60, expiring.window_s from 300 to 86400 (long enough to hold a patrol) and not_paused.notification_rate_limit_s >= 300 (Monitoring's minimum)."
  }
}

variable "features" {
  type = object({
    halted_redrives = optional(object({
      enabled = optional(bool, true)
    }), {})
  })
  description = "Dashboard widgets and alerts of redrive features, on the log fields they write: halted re-drives (decisions with outcome HALTED, written when a bulk re-drive's canaries fail again: a widget and an alert to pipeline_alerts' channels; on by default). They add observability only; the features' queues and grants come with the features (canaries and parking have their own inputs)."
  default     = {}
  nullable    = false
}

variable "canaries" {
  type = object({
    tasks     = optional(number, 3)
    failures  = optional(number, 1)
    timeout_s = optional(number, 120)
  })
  description = "Canaries of every bulk re-drive (a deploy's or a queue alert's sweep, a restore of parked tasks): in each queue the first tasks (REDRIVE_CANARIES, 0 turns canaries off) are re-driven first, and the rest goes only when fewer than failures (REDRIVE_CANARY_FAILURES) of them failed again; canaries not all answered within timeout_s (REDRIVE_CANARY_TIMEOUT_S) release the rest only if one succeeded. A halt leaves the queue's tasks to Cloud Tasks' own retries and logs one HALTED line at ERROR (the halted alert of pipeline_alerts). In queued mode a gate job in the redrive queue judges the canaries, so run_job's timeout (job_function.timeout_s) bounds how much of the queue one release sweeps before it is delivered again."
  default     = {}
  nullable    = false

  validation {
    # The ranges redrive.core.config accepts (an instance with another value would not start).
    condition = (
      var.canaries.tasks >= 0 && var.canaries.tasks <= 20 && floor(var.canaries.tasks) == var.canaries.tasks &&
      floor(var.canaries.failures) == var.canaries.failures &&
      (var.canaries.tasks == 0 || (var.canaries.failures >= 1 && var.canaries.failures <= var.canaries.tasks)) &&
      var.canaries.timeout_s >= 0 && var.canaries.timeout_s <= 3600
    )
    error_message = "canaries.tasks must be a whole number from 0 to 20, canaries.failures a whole number from 1 to canaries.tasks, and canaries.timeout_s from 0 to 3600 seconds."
  }
}
