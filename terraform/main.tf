# redrive: Cloud Functions (2nd gen) that force-run failed Cloud Tasks tasks once a fix is live.
# This file holds the shared names, the service accounts, the function source and the image
# repository; the rest is split by concern: functions.tf, queue.tf, signals.tf, iam.tf,
# observability.tf, dashboard.tf.

data "google_project" "main" {
  project_id = var.project_id
}

locals {
  role_prefix = replace(var.name_prefix, "-", "_") # custom role ids allow no hyphens

  signal_function_name = "${var.name_prefix}-signal"
  job_function_name    = "${var.name_prefix}-job"
  queue_id             = coalesce(var.redrive_queue.name, "${var.name_prefix}-jobs")
  topic_name           = coalesce(var.signals_topic.name, "${var.name_prefix}-signals")
  topic_id             = var.signals_topic.create ? google_pubsub_topic.signals[0].id : "projects/${var.project_id}/topics/${local.topic_name}"
  bucket_name          = coalesce(var.source_bucket.name, "${replace(replace(var.project_id, ":", "-"), ".", "-")}-${var.name_prefix}-source")
  runtime_member       = "serviceAccount:${google_service_account.main.email}"
  project_number       = data.google_project.main.number

  # Google's service agents of project_id (they exist once their API is enabled).
  agents = {
    pubsub           = "serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    eventarc         = "serviceAccount:service-${local.project_number}@gcp-sa-eventarc.iam.gserviceaccount.com"
    artifactregistry = "serviceAccount:service-${local.project_number}@gcp-sa-artifactregistry.iam.gserviceaccount.com"
    cloudfunctions   = "serviceAccount:service-${local.project_number}@gcf-admin-robot.iam.gserviceaccount.com"
    cloudrun         = "serviceAccount:service-${local.project_number}@serverless-robot-prod.iam.gserviceaccount.com"
    monitoring       = "serviceAccount:service-${local.project_number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
  }

  build_account_email = var.build_service_account.create ? google_service_account.build[0].email : var.build_service_account.email
  build_member        = "serviceAccount:${local.build_account_email}"
  repository_id       = var.artifact_repository.create ? google_artifact_registry_repository.functions[0].id : var.artifact_repository.id
  # The repository's parts, known at plan time when the module creates it.
  repository_name = coalesce(var.artifact_repository.name, "${var.name_prefix}-functions")
  repository_parts = var.artifact_repository.create ? {
    project  = var.project_id
    location = var.region
    name     = local.repository_name
    } : {
    project  = split("/", var.artifact_repository.id)[1]
    location = split("/", var.artifact_repository.id)[3]
    name     = split("/", var.artifact_repository.id)[5]
  }

  # Target queues split into their parts: each gets its own grant, and log-based wiring can only
  # see the queues of this project (logs are project-scoped).
  target_queues = {
    for q in var.target_queues : q => {
      project  = split("/", q)[1]
      location = split("/", q)[3]
      queue    = split("/", q)[5]
    }
  }
  target_projects = toset([for q in local.target_queues : q.project])
  local_target_queues = {
    for name, q in local.target_queues : name => q if q.project == var.project_id
  }
}

# One identity runs both functions and is the Pub/Sub trigger identity; a second one exists only
# to sign the redrive queue's OIDC tokens, so nothing else may invoke run_job.
resource "google_service_account" "main" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-runtime"
  display_name = "redrive functions"
  description  = "Runs the redrive functions (handle_signal, run_job); holds only the grants redrive's API calls need."
}

resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-invoker"
  display_name = "redrive job invoker"
  description  = "Identity of the OIDC token the redrive queue sends to run_job; its only grant is run.invoker on run_job."
}

# Cloud Build runs the functions' builds as this account (grants in iam.tf): new projects' default
# Cloud Build account may lack what a build needs.
resource "google_service_account" "build" {
  count        = var.build_service_account.create ? 1 : 0
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "redrive function builds"
  description  = "Builds the redrive functions: writes build logs, reads the source archive and pushes the function image to the redrive repository."
}

# The functions' images: a repository of our own (the default gcf-artifacts one is shared by every
# function of the region and cannot carry the key or the cleanup policy).
resource "google_artifact_registry_repository" "functions" {
  count                  = var.artifact_repository.create ? 1 : 0
  project                = var.project_id
  location               = var.region
  repository_id          = local.repository_name
  format                 = "DOCKER"
  description            = "Images of the redrive functions (built by Cloud Build from the source archive)."
  kms_key_name           = var.kms_key_name
  labels                 = var.labels
  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.artifact_repository.keep_recent_versions
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.agents]
}

# Source archive: the allowlist in deploy-files.txt (the function runtime: main.py,
# requirements.txt and src/redrive), the same file redrive_tools.archive reads, so a local
# virtual environment, the operator tools, the emulator, Terraform state or secrets lying in the
# repository never ship.
locals {
  source_dir = coalesce(var.source_dir, "${path.module}/..")
  source_patterns = [
    for line in split("\n", file("${local.source_dir}/deploy-files.txt")) : trimspace(line)
    if trimspace(line) != "" && !startswith(trimspace(line), "#")
  ]
  source_files = toset(flatten([
    for pattern in local.source_patterns : [
      for f in fileset(local.source_dir, pattern) : f
      if !strcontains(f, "__pycache__/") && !endswith(f, ".pyc")
    ]
  ]))
}

data "archive_file" "source" {
  type        = "zip"
  output_path = "${path.module}/.build/${var.name_prefix}-source.zip"

  dynamic "source" {
    for_each = local.source_files
    content {
      filename = source.value
      content  = file("${local.source_dir}/${source.value}")
    }
  }
}

# Old archives are only needed to roll back, so the last few noncurrent versions are kept.
resource "google_storage_bucket" "source" {
  project                     = var.project_id
  name                        = local.bucket_name
  location                    = coalesce(var.source_bucket.location, var.region)
  force_destroy               = var.source_bucket.force_destroy
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      num_newer_versions = 5
      with_state         = "ARCHIVED"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "logging" {
    for_each = var.source_bucket.access_log_bucket == null ? [] : [var.source_bucket.access_log_bucket]
    content {
      log_bucket = logging.value
    }
  }

  # The Cloud Storage service agent must be able to use the key before the bucket does.
  depends_on = [google_kms_crypto_key_iam_member.agents]
}

# The content hash in the name makes every code change a new object, which redeploys both
# functions; an unchanged tree changes nothing.
resource "google_storage_bucket_object" "source" {
  name   = "${var.name_prefix}-${data.archive_file.source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}
