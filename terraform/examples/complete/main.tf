# A complete deployment: the APIs, a target Cloud Run service, a target queue that keeps failed
# tasks long enough to be re-driven, an e-mail channel for the alerts, and redrive wired to every
# signal, with its dashboard and its pipeline alerts.

locals {
  apis = [
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com", # the parking patrol
    "cloudtasks.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "artifactregistry.googleapis.com",
    "storage.googleapis.com",
  ]
}

resource "google_project_service" "apis" {
  for_each           = toset(local.apis)
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# The worker whose failed tasks redrive re-runs once a fixed revision is deployed.
resource "google_service_account" "billing" {
  project      = var.project_id
  account_id   = "billing-worker"
  display_name = "billing worker"
}

resource "google_cloud_run_v2_service" "billing" {
  project             = var.project_id
  name                = "billing"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = false

  template {
    service_account = google_service_account.billing.email
    containers {
      image = "us-docker.pkg.dev/cloudrun/container/hello"
    }
  }

  depends_on = [google_project_service.apis]
}

# Cloud Tasks calls the worker with an OIDC token of this account.
resource "google_service_account" "billing_tasks" {
  project      = var.project_id
  account_id   = "billing-tasks"
  display_name = "billing tasks invoker"
}

resource "google_cloud_run_v2_service_iam_member" "billing_tasks_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.billing.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.billing_tasks.email}"
}

# Generous retries: unlimited attempts bounded by 7 days, so a failed task still exists when the
# fix lands (Cloud Tasks deletes a task once both limits are reached). Task-operation logging on:
# the log sink and the alert read failed attempts from it.
resource "google_cloud_tasks_queue" "billing" {
  project  = var.project_id
  name     = "billing"
  location = var.region

  rate_limits {
    max_dispatches_per_second = 50
    max_concurrent_dispatches = 100
  }

  retry_config {
    max_attempts       = -1
    max_retry_duration = "604800s"
    min_backoff        = "10s"
    max_backoff        = "3600s"
    max_doublings      = 8
  }

  stackdriver_logging_config {
    sampling_ratio = 1
  }

  depends_on = [google_project_service.apis]
}

# Where redrive's own alerts go.
resource "google_monitoring_notification_channel" "oncall" {
  project      = var.project_id
  display_name = "redrive on-call"
  type         = "email"
  labels = {
    email_address = var.notification_email
  }
  user_labels = local.labels

  depends_on = [google_project_service.apis]
}

locals {
  labels = { app = "redrive", env = "example" }

  # Full names built from known arguments: they key for_each and count inside the module, and
  # google_cloud_tasks_queue.billing.id would only be known after apply. Referencing the
  # resources' name attributes still orders the grants after the queue and the service.
  billing_queue   = "projects/${var.project_id}/locations/${var.region}/queues/${google_cloud_tasks_queue.billing.name}"
  billing_service = "projects/${var.project_id}/locations/${var.region}/services/${google_cloud_run_v2_service.billing.name}"
  # Known at plan time too (the resource's email attribute is known only after apply).
  billing_tasks_email = "${google_service_account.billing_tasks.account_id}@${var.project_id}.iam.gserviceaccount.com"
}

module "redrive" {
  source = "../.."

  project_id    = var.project_id
  region        = var.region
  target_queues = [local.billing_queue]
  service_map = {
    (local.billing_service) = [local.billing_queue]
  }

  settings = {
    fix_check = "revision"
    dry_run   = var.dry_run
  }

  # Bulk re-drives beyond the RunTask quota re-create the failed tasks; billing's tasks carry an
  # OIDC token of billing_tasks, which a copy needs actAs on. The email is built from known
  # arguments (local.billing_tasks_email: for_each keys must be known at plan time).
  recreate = {
    enabled               = true
    task_service_accounts = [local.billing_tasks_email]
  }

  # Parking: a billing task about to use its last attempt (its 7 days of retries spent, or near
  # Cloud Tasks' 31-day retention limit) with no fix live waits in the paused parking queue and is
  # restored by the deploy that fixes it; a restored task carries the original's OIDC token.
  parking = {
    enabled               = true
    task_service_accounts = [local.billing_tasks_email]
  }

  attempt_failure_alert = { enabled = true }
  attempt_failure_sink  = { enabled = true }
  deploy_subscription   = { enabled = true, topic = "cloud-builds" }
  outcome_alert = {
    enabled               = true
    notification_channels = [google_monitoring_notification_channel.oncall.id]
  }
  pipeline_alerts = {
    enabled               = true
    notification_channels = [google_monitoring_notification_channel.oncall.id]
  }

  labels = local.labels

  depends_on = [google_project_service.apis]
}
