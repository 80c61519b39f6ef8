//! The table of RAPI resources (what is implemented, what is not yet) and the OpenAPI 3
//! document generated from it, served at `/openapi.json`.

use serde_json::{json, Map, Value};

/// Where a resource comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Ganeti,
    Maguey,
}

/// One method of one resource.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// Path with `{name}` placeholders.
    pub path: &'static str,
    pub method: &'static str,
    /// False: answers 501 until the feature exists.
    pub implemented: bool,
    /// Needs the `write` option.
    pub write: bool,
    /// What the answer is: `job` (a job id string) or a short description.
    pub returns: &'static str,
    pub summary: &'static str,
    pub origin: Origin,
}

const fn r(
    path: &'static str,
    method: &'static str,
    implemented: bool,
    returns: &'static str,
    summary: &'static str,
) -> RouteDoc {
    let write = !matches!(method.as_bytes(), b"GET");
    RouteDoc {
        path,
        method,
        implemented,
        write,
        returns,
        summary,
        origin: Origin::Ganeti,
    }
}

const fn m(
    path: &'static str,
    method: &'static str,
    returns: &'static str,
    summary: &'static str,
) -> RouteDoc {
    RouteDoc {
        path,
        method,
        implemented: true,
        write: false,
        returns,
        summary,
        origin: Origin::Maguey,
    }
}

/// Every resource and method, Ganeti's and Maguey's.
pub const ROUTES: &[RouteDoc] = &[
    r("/", "GET", true, "null", "Legacy root"),
    r("/version", "GET", true, "integer", "RAPI version (2)"),
    r("/2", "GET", true, "null", "Version 2 root"),
    r("/2/info", "GET", true, "object", "Cluster information"),
    r("/2/features", "GET", true, "array", "Optional features: instance-create-reqv1, instance-reinstall-reqv1, node-migrate-reqv1, node-evac-res1"),
    r("/2/os", "GET", true, "array", "OS names (bulk=1: OS objects), diagnosed on every vm-capable node"),
    r("/2/modify", "PUT", true, "job", "OP_CLUSTER_SET_PARAMS: vg_name, enabled_hypervisors, enabled_disk_templates, hvparams, beparams, nicparams, ndparams, candidate_pool_size, drbd_helper, mac_prefix, file/shared_file_storage_dir, reserved_lvs, default_iallocator, ipolicy"),
    r("/2/redistribute-config", "PUT", false, "job", "Redistribute the configuration"),
    r("/2/tags", "GET", true, "array", "Cluster tags"),
    r("/2/tags", "PUT", true, "job", "Add cluster tags (?tag=...)"),
    r("/2/tags", "DELETE", true, "job", "Remove cluster tags (?tag=...)"),
    r("/2/jobs", "GET", true, "array", "Jobs: [{id, uri}] or, with bulk=1, job objects"),
    r("/2/jobs/{job_id}", "GET", true, "object", "A job: id, ops, status, summary, opstatus, opresult, oplog, received_ts, start_ts, end_ts"),
    r("/2/jobs/{job_id}", "DELETE", true, "array", "Cancel a job: [success, message]"),
    RouteDoc {
        write: true,
        ..r("/2/jobs/{job_id}/wait", "GET", true, "object", "Long poll (10 s) for a change: body {fields, previous_job_info, previous_log_serial}; answers {job_info, log_entries} or null")
    },
    r("/2/filters", "GET", false, "array", "Job filter rules"),
    r("/2/filters", "POST", false, "string", "Add a filter rule"),
    r("/2/filters/{uuid}", "GET", false, "object", "A filter rule"),
    r("/2/filters/{uuid}", "PUT", false, "string", "Replace a filter rule"),
    r("/2/filters/{uuid}", "DELETE", false, "null", "Delete a filter rule"),
    r("/2/nodes", "GET", true, "array", "Nodes: [{id, uri}] or, with bulk=1, node objects"),
    r("/2/nodes/{node_name}", "GET", true, "object", "A node"),
    r("/2/nodes/{node_name}/role", "GET", true, "string", "master, master-candidate, regular, drained or offline"),
    r("/2/nodes/{node_name}/role", "PUT", true, "job", "Set the role (body: the role as a JSON string)"),
    r("/2/nodes/{node_name}/modify", "POST", true, "job", "OP_NODE_SET_PARAMS: offline, drained, master_candidate, master_capable, vm_capable, force"),
    r("/2/nodes/{node_name}/evacuate", "POST", true, "job", "Evacuate a node"),
    r("/2/nodes/{node_name}/migrate", "POST", true, "job", "Migrate a node's primary instances"),
    r("/2/nodes/{node_name}/powercycle", "POST", false, "job", "Power-cycle a node"),
    r("/2/nodes/{node_name}/storage", "GET", false, "job", "Storage units of a node"),
    r("/2/nodes/{node_name}/storage/modify", "PUT", false, "job", "Modify a storage unit"),
    r("/2/nodes/{node_name}/storage/repair", "PUT", false, "job", "Repair a storage unit"),
    r("/2/nodes/{node_name}/tags", "GET", true, "array", "Node tags"),
    r("/2/nodes/{node_name}/tags", "PUT", true, "job", "Add node tags (?tag=...)"),
    r("/2/nodes/{node_name}/tags", "DELETE", true, "job", "Remove node tags (?tag=...)"),
    r("/2/groups", "GET", true, "array", "Node groups: [{name, uri}] or, with bulk=1, group objects"),
    r("/2/groups", "POST", true, "job", "Add a node group"),
    r("/2/groups/{group_name}", "GET", true, "object", "A node group"),
    r("/2/groups/{group_name}", "DELETE", true, "job", "Remove a node group"),
    r("/2/groups/{group_name}/modify", "PUT", true, "job", "Modify a node group"),
    r("/2/groups/{group_name}/rename", "PUT", true, "job", "Rename a node group"),
    r("/2/groups/{group_name}/assign-nodes", "PUT", true, "job", "Move nodes into a group"),
    r("/2/groups/{group_name}/evacuate", "PUT", true, "job", "OP_GROUP_EVACUATE: target_groups, iallocator, early_release, sequential, force_failover (?dry-run=1: the plan only)"),
    r("/2/groups/{group_name}/tags", "GET", true, "array", "Group tags"),
    r("/2/groups/{group_name}/tags", "PUT", true, "job", "Add group tags (?tag=...)"),
    r("/2/groups/{group_name}/tags", "DELETE", true, "job", "Remove group tags (?tag=...)"),
    r("/2/networks", "GET", true, "array", "Networks"),
    r("/2/networks", "POST", true, "job", "Add a network"),
    r("/2/networks/{network_name}", "GET", true, "object", "A network"),
    r("/2/networks/{network_name}", "DELETE", true, "job", "Remove a network"),
    r("/2/networks/{network_name}/modify", "PUT", true, "job", "Modify a network"),
    r("/2/networks/{network_name}/connect", "PUT", true, "job", "Connect a network to a group"),
    r("/2/networks/{network_name}/disconnect", "PUT", true, "job", "Disconnect a network"),
    r("/2/networks/{network_name}/rename", "PUT", true, "job", "Rename a network"),
    r("/2/networks/{network_name}/tags", "GET", true, "array", "Network tags"),
    r("/2/networks/{network_name}/tags", "PUT", true, "job", "Add network tags"),
    r("/2/networks/{network_name}/tags", "DELETE", true, "job", "Remove network tags"),
    r("/2/instances", "GET", true, "array", "Instances: [{id, uri}] or, with bulk=1, instance objects"),
    r("/2/instances", "POST", true, "job", "Create an instance (request version 1: __version__ = 1)"),
    r("/2/instances-multi-alloc", "POST", false, "object", "Allocate several instances"),
    r("/2/instances/{instance_name}", "GET", true, "object", "An instance"),
    r("/2/instances/{instance_name}", "DELETE", true, "job", "Remove an instance"),
    r("/2/instances/{instance_name}/info", "GET", true, "job", "OP_INSTANCE_QUERY_DATA (static=1: configuration only)"),
    r("/2/instances/{instance_name}/reboot", "POST", true, "job", "Reboot (type=soft|hard|full)"),
    r("/2/instances/{instance_name}/startup", "PUT", true, "job", "Start (force, no_remember)"),
    r("/2/instances/{instance_name}/shutdown", "PUT", true, "job", "Stop (body: timeout; no_remember)"),
    r("/2/instances/{instance_name}/reinstall", "POST", true, "job", "Reinstall the OS"),
    r("/2/instances/{instance_name}/replace-disks", "POST", true, "job", "Replace disks"),
    r("/2/instances/{instance_name}/activate-disks", "PUT", true, "job", "Activate disks (?ignore_size=1); the job's result lists [node, iv_name, device]"),
    r("/2/instances/{instance_name}/deactivate-disks", "PUT", true, "job", "Deactivate disks (?force=1 skips the checks that the instance is down)"),
    r("/2/instances/{instance_name}/recreate-disks", "POST", true, "job", "Recreate disks"),
    r("/2/instances/{instance_name}/disk/{disk_index}/grow", "POST", true, "job", "Grow a disk (amount MiB, absolute, wait_for_sync)"),
    r("/2/instances/{instance_name}/prepare-export", "PUT", false, "job", "Prepare an export"),
    r("/2/instances/{instance_name}/export", "PUT", false, "job", "Export an instance"),
    r("/2/instances/{instance_name}/migrate", "PUT", true, "job", "Migrate an instance"),
    r("/2/instances/{instance_name}/failover", "PUT", true, "job", "Fail an instance over"),
    r("/2/instances/{instance_name}/change-group", "PUT", true, "job", "OP_INSTANCE_CHANGE_GROUP: target_groups, iallocator, early_release (?dry-run=1: the plan only)"),
    r("/2/instances/{instance_name}/rename", "PUT", true, "job", "Rename an instance"),
    r("/2/instances/{instance_name}/modify", "PUT", true, "job", "OP_INSTANCE_SET_PARAMS: beparams, hvparams, osparams, offline, force"),
    r("/2/instances/{instance_name}/console", "GET", true, "object", "Console description (fake hypervisor: kind message)"),
    r("/2/instances/{instance_name}/tags", "GET", true, "array", "Instance tags"),
    r("/2/instances/{instance_name}/tags", "PUT", true, "job", "Add instance tags (?tag=...)"),
    r("/2/instances/{instance_name}/tags", "DELETE", true, "job", "Remove instance tags (?tag=...)"),
    r("/2/query/{resource}", "GET", true, "object", "Query2 (instance, node, group): ?fields=a,b; answers {fields, data}"),
    r("/2/query/{resource}", "PUT", true, "object", "Query2 with a body {fields}; filters are not supported yet"),
    r("/2/query/{resource}/fields", "GET", true, "object", "Field definitions of a query resource"),
    m("/openapi.json", "GET", "object", "This document (Maguey)"),
    m("/luxi/jobs", "GET", "array", "Master API (maguey --cluster URL): jobs (?archived=true)"),
    m("/luxi/jobs/{id}", "GET", "object", "Master API: a job as Maguey stores it"),
    m("/luxi/query", "POST", "object", "Master API: query {what, names, fields} (read access)"),
    m("/luxi/fields/{resource}", "GET", "array", "Master API: field names and descriptions"),
    RouteDoc { write: true, ..m("/luxi/submit", "POST", "object", "Master API: submit {ops, priority} -> {job_id}; OP_CLUSTER_DESTROY refused") },
    RouteDoc { write: true, ..m("/luxi/jobs/{id}/wait", "POST", "object", "Master API: wait {status, log_serial, timeout_secs} -> {job}") },
    RouteDoc { write: true, ..m("/luxi/jobs/{id}/cancel", "POST", "object", "Master API: cancel a job") },
    RouteDoc { write: true, ..m("/luxi/archive", "POST", "object", "Master API: archive jobs older than {age_secs}") },
    RouteDoc { write: true, ..m("/luxi/config", "GET", "object", "Master API: export the configuration") },
    RouteDoc { write: true, ..m("/luxi/join-token", "POST", "object", "Master API: a node join token") },
];

fn matches(pattern: &str, segs: &[String]) -> bool {
    let p: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    p.len() == segs.len()
        && p.iter()
            .zip(segs)
            .all(|(p, s)| (p.starts_with('{') && p.ends_with('}')) || *p == s.as_str())
}

/// The routes whose path matches `segs`.
pub fn find(segs: &[String]) -> Vec<&'static RouteDoc> {
    ROUTES.iter().filter(|r| matches(r.path, segs)).collect()
}

/// The OpenAPI 3 document of the whole API.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        let params: Vec<Value> = route
            .path
            .split('/')
            .filter(|s| s.starts_with('{'))
            .map(|s| {
                json!({"name": s.trim_matches(|c| c == '{' || c == '}'), "in": "path",
                       "required": true, "schema": {"type": "string"}})
            })
            .collect();
        let ok_schema = if route.returns == "job" {
            json!({"type": "string", "description": "a job id"})
        } else {
            json!({"description": route.returns})
        };
        let mut responses = Map::new();
        if route.implemented {
            responses.insert(
                "200".into(),
                json!({"description": "OK", "content": {"application/json": {"schema": ok_schema}}}),
            );
            responses.insert(
                "400".into(),
                json!({"$ref": "#/components/responses/Error"}),
            );
            responses.insert(
                "404".into(),
                json!({"$ref": "#/components/responses/Error"}),
            );
        } else {
            responses.insert(
                "501".into(),
                json!({"description": "Not implemented in Maguey yet", "$ref": "#/components/responses/Error"}),
            );
        }
        responses.insert(
            "401".into(),
            json!({"$ref": "#/components/responses/Error"}),
        );
        if route.write {
            responses.insert(
                "403".into(),
                json!({"$ref": "#/components/responses/Error"}),
            );
        }
        let op = json!({
            "summary": route.summary,
            "parameters": params,
            "responses": responses,
            "x-maguey-implemented": route.implemented,
            "x-maguey-origin": match route.origin { Origin::Ganeti => "ganeti", Origin::Maguey => "maguey" },
            "x-maguey-access": if route.write { "write" } else { "read" },
        });
        entry
            .as_object_mut()
            .expect("object")
            .insert(route.method.to_ascii_lowercase(), op);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Maguey Remote API",
            "version": maguey_model::VERSION,
            "description": "Ganeti's RAPI v2 as served by Maguey's master daemon. Common query \
                arguments: bulk, fields, dry-run (not supported yet: 501), force, reason. \
                Mutations answer a job id as a JSON string. Resources marked \
                x-maguey-implemented=false answer 501 until the feature exists.",
        },
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "responses": {
                "Error": {
                    "description": "Ganeti's error body",
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "integer"},
                            "message": {"type": "string"},
                            "explain": {"type": "string"}
                        }
                    }}}
                }
            }
        },
        "security": [{"basic": []}],
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_every_route() {
        let d = document();
        let paths = d["paths"].as_object().unwrap();
        assert!(paths.contains_key("/2/instances/{instance_name}/startup"));
        assert_eq!(
            d["paths"]["/2/instances/{instance_name}/activate-disks"]["put"]
                ["x-maguey-implemented"],
            true
        );
        assert_eq!(
            d["paths"]["/openapi.json"]["get"]["x-maguey-origin"],
            "maguey"
        );
        let segs: Vec<String> = ["2", "instances", "x", "tags"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(find(&segs).len(), 3);
    }
}
