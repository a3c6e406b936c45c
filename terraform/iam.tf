# Least privilege: exactly the permissions of the API calls redrive makes, each on the narrowest
# resource. tests/test_terraform.py scans the source for those calls and checks this file.

locals {
  # GetTask, ListTasks, RunTask on target queues; FULL view needs one more permission.
  task_runner_permissions = concat(
    ["cloudtasks.tasks.get", "cloudtasks.tasks.list", "cloudtasks.tasks.run"],
    var.settings.response_view == "FULL" ? ["cloudtasks.tasks.fullView"] : [],
  )

  # CreateTask on the redrive queue only (roles/cloudtasks.enqueuer would add fullView).
  job_enqueuer_permissions = ["cloudtasks.tasks.create"]

  # The revision fix check reads Cloud Run services and revisions of the projects whose services
  # the target queues feed: the target queues' projects and those named in service_map.
  run_viewer_projects = var.settings.fix_check == "revision" ? toset(concat(
    [for q in local.target_queues : q.project],
    [for service in keys(var.service_map) : split("/", service)[1]],
  )) : toset([])
}

# No predefined role is as narrow as get + list + run (taskRunner lacks get/list and adds
# fullView; viewer adds queue reads), so one custom role per project that holds target queues.
resource "google_project_iam_custom_role" "task_runner" {
  for_each    = local.target_projects
  project     = each.key
  role_id     = "${local.role_prefix}_taskRunner"
  title       = "redrive task runner"
  description = "Read and force-run the tasks of the queues redrive may re-drive (granted per queue)."
  permissions = local.task_runner_permissions
}

resource "google_cloud_tasks_queue_iam_member" "task_runner" {
  for_each = local.target_queues
  project  = each.value.project
  location = each.value.location
  name     = each.value.queue
  role     = google_project_iam_custom_role.task_runner[each.value.project].name
  member   = local.runtime_member
}

resource "google_project_iam_custom_role" "job_enqueuer" {
  project     = var.project_id
  role_id     = "${local.role_prefix}_jobEnqueuer"
  title       = "redrive job enqueuer"
  description = "Create redrive jobs in the redrive queue (granted on that queue only)."
  permissions = local.job_enqueuer_permissions
}

resource "google_cloud_tasks_queue_iam_member" "job_enqueuer" {
  project  = var.project_id
  location = google_cloud_tasks_queue.main.location
  name     = google_cloud_tasks_queue.main.name
  role     = google_project_iam_custom_role.job_enqueuer.name
  member   = local.runtime_member
}

# Creating a task with an OIDC token of the invoker account needs actAs on that account only.
resource "google_service_account_iam_member" "runtime_acts_as_invoker" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.runtime_member
}

# Only the redrive queue's OIDC identity may call run_job (a gen2 function's Cloud Run service has
# the function's name).
resource "google_cloud_run_v2_service_iam_member" "job_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.job.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.invoker.email}"
}

# The Pub/Sub trigger (and the deploy push subscription) deliver as the runtime account.
resource "google_cloud_run_v2_service_iam_member" "signal_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.main.name
  role     = "roles/run.invoker"
  member   = local.runtime_member
}

# Read-only Cloud Run access (services.get, revisions.get/list) for the revision fix check.
resource "google_project_iam_member" "run_viewer" {
  for_each = local.run_viewer_projects
  project  = each.key
  role     = "roles/run.viewer"
  member   = local.runtime_member
}
