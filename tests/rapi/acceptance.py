#!/usr/bin/python3
"""Acceptance test of Maguey's Remote API with Ganeti's own Python client, unchanged.

Run against a lab cluster: eval "$(maguey lab env --dir DIR)"; tests/rapi/acceptance.py
It needs MAGUEY_RAPI_URL, MAGUEY_RAPI_USER, MAGUEY_RAPI_PASSWORD, MAGUEY_RAPI_CA and a lab
with at least 3 nodes (node1 master, node2, node3) and the `noop` OS. Exits non-zero on the
first failed check.
"""

import os
import sys
import time
from urllib.parse import urlparse

from ganeti.rapi import client as rapi

CHECKS = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    CHECKS.append(what)


def is_job_id(v):
    return isinstance(v, (str, int)) and str(v).isdigit()


def wait_ok(cl, job_id, what):
    check(is_job_id(job_id), "%s answers a job id (got %r)" % (what, job_id))
    ok = cl.WaitForJobCompletion(job_id, period=0.2, retries=600)
    if not ok:
        raise AssertionError("%s: job %s failed: %r" % (what, job_id, cl.GetJobStatus(job_id)))
    CHECKS.append("%s: job %s succeeded" % (what, job_id))
    return cl.GetJobStatus(job_id)


def main():
    url = urlparse(os.environ["MAGUEY_RAPI_URL"])
    cl = rapi.GanetiRapiClient(
        url.hostname, port=url.port or 5080,
        username=os.environ["MAGUEY_RAPI_USER"],
        password=os.environ["MAGUEY_RAPI_PASSWORD"],
        curl_config_fn=rapi.GenericCurlConfig(cafile=os.environ["MAGUEY_RAPI_CA"]))
    inst = os.environ.get("RAPI_TEST_INSTANCE", "rapi-inst1")

    check(cl.GetVersion() == 2, "GetVersion is 2")

    info = cl.GetInfo()
    check(isinstance(info, dict), "GetInfo is a dict")
    for key in ("name", "master", "software_version", "enabled_hypervisors",
                "architecture", "beparams", "hvparams", "tags", "uuid"):
        check(key in info, "GetInfo has %s" % key)
    check(info["master"] == "node1", "GetInfo master is node1")

    feats = cl.GetFeatures()
    check(isinstance(feats, list) and rapi.INST_CREATE_REQV1 in feats,
          "GetFeatures lists %s" % rapi.INST_CREATE_REQV1)

    oses = cl.GetOperatingSystems()
    check(isinstance(oses, list) and "noop" in oses, "GetOperatingSystems lists noop")

    nodes = cl.GetNodes(bulk=True)
    check(isinstance(nodes, list) and len(nodes) >= 3, "GetNodes(bulk) lists 3 nodes")
    for n in nodes:
        for key in ("name", "offline", "master_candidate", "drained", "mtotal", "mfree",
                    "dtotal", "dfree", "ctotal", "pip", "sip", "role", "pinst_cnt",
                    "pinst_list", "sinst_list", "group.uuid", "tags", "uuid", "serial_no"):
            check(key in n, "node %s has %s" % (n.get("name"), key))
    names = sorted(n["name"] for n in nodes)
    check(names[:3] == ["node1", "node2", "node3"], "GetNodes names")
    check(sorted(cl.GetNodes()) == names, "GetNodes() is the list of names")

    n2 = cl.GetNode("node2")
    check(n2["name"] == "node2" and isinstance(n2["mfree"], int), "GetNode(node2)")
    check(cl.GetNodeRole("node1") == "master", "GetNodeRole(node1) is master")

    wait_ok(cl, cl.SetNodeRole("node3", "drained"), "SetNodeRole(node3, drained)")
    check(cl.GetNodeRole("node3") == "drained", "node3 is drained")
    wait_ok(cl, cl.SetNodeRole("node3", "regular"), "SetNodeRole(node3, regular)")
    check(cl.GetNodeRole("node3") == "regular", "node3 is regular")

    job = cl.ModifyNode("node3", drained=True)
    wait_ok(cl, job, "ModifyNode(node3, drained)")
    check(cl.GetNode("node3")["drained"] is True, "node3 drained by ModifyNode")
    wait_ok(cl, cl.ModifyNode("node3", drained=False), "ModifyNode(node3, undrained)")

    groups = cl.GetGroups(bulk=True)
    check(isinstance(groups, list) and groups[0]["name"] == "default"
          and groups[0]["node_cnt"] >= 3, "GetGroups(bulk)")
    check(cl.GetGroups() == ["default"], "GetGroups() names")
    check(cl.GetGroup("default")["name"] == "default", "GetGroup(default)")

    wait_ok(cl, cl.AddClusterTags(["site:lab"]), "AddClusterTags")
    check("site:lab" in cl.GetClusterTags(), "GetClusterTags")
    wait_ok(cl, cl.DeleteClusterTags(["site:lab"]), "DeleteClusterTags")
    check("site:lab" not in cl.GetClusterTags(), "cluster tag removed")
    wait_ok(cl, cl.AddNodeTags("node2", ["rack:7"]), "AddNodeTags")
    check(cl.GetNodeTags("node2") == ["rack:7"], "GetNodeTags")

    before = cl.GetInstances(bulk=True)
    check(isinstance(before, list), "GetInstances(bulk) is a list")

    job = cl.CreateInstance("create", inst, "file", [{"size": 64}], [{}],
                            os="noop", pnode="node2", hypervisor="fake",
                            beparams={"maxmem": 128, "minmem": 128, "vcpus": 1},
                            name_check=False, ip_check=False)
    status = wait_ok(cl, job, "CreateInstance")
    for key in ("id", "ops", "status", "summary", "opstatus", "opresult", "oplog",
                "received_ts", "start_ts", "end_ts"):
        check(key in status, "GetJobStatus has %s" % key)
    check(status["status"] == "success", "job status success")
    check(status["ops"][0]["OP_ID"] == "OP_INSTANCE_CREATE", "job ops carry OP_ID")
    check(isinstance(status["oplog"], list) and isinstance(status["oplog"][0], list),
          "oplog is a list per opcode")
    if status["oplog"][0]:
        entry = status["oplog"][0][0]
        check(len(entry) == 4 and isinstance(entry[1], list) and len(entry[1]) == 2,
              "oplog entries are (serial, (sec, usec), type, message)")
    check(isinstance(status["received_ts"], list) and len(status["received_ts"]) == 2,
          "timestamps are (sec, usec)")

    change = cl.WaitForJobChange(job, ["status", "opstatus"], None, 0)
    check(change["job_info"] == ["success", ["success"]] and
          isinstance(change["log_entries"], list), "WaitForJobChange")
    cancel = cl.CancelJob(job)
    check(isinstance(cancel, list) and cancel[0] is False,
          "CancelJob of a finished job answers (False, message)")

    jobs = cl.GetJobs()
    check(int(job) in jobs, "GetJobs lists the creation job")
    bulk_jobs = cl.GetJobs(bulk=True)
    check(any(j["id"] == int(job) for j in bulk_jobs), "GetJobs(bulk) has the job")

    i = cl.GetInstance(inst)
    for key in ("name", "admin_state", "os", "pnode", "snodes", "disk_template",
                "disk.sizes", "nic.macs", "beparams", "hvparams", "oper_state", "status",
                "tags", "uuid"):
        check(key in i, "instance has %s" % key)
    check(i["pnode"] == "node2" and i["status"] == "running" and i["oper_state"],
          "instance runs on node2")
    check(i["disk.sizes"] == [64], "instance disk size 64")
    check(i["beparams"]["memory"] == 128, "beparams memory alias")
    allinst = cl.GetInstances(bulk=True)
    check(any(x["name"] == inst for x in allinst), "GetInstances(bulk) has the instance")
    check(inst in cl.GetInstances(), "GetInstances() has the instance")

    wait_ok(cl, cl.ShutdownInstance(inst, timeout=10), "ShutdownInstance")
    i = cl.GetInstance(inst)
    check(i["admin_state"] == "down" and i["status"] == "ADMIN_down", "instance is down")
    try:
        cl.GetInstanceConsole(inst)
        check(False, "console of a stopped instance is refused")
    except rapi.GanetiApiError as err:
        check(err.code == 503, "console of a stopped instance: 503")

    wait_ok(cl, cl.StartupInstance(inst), "StartupInstance")
    check(cl.GetInstance(inst)["status"] == "running", "instance runs again")
    wait_ok(cl, cl.RebootInstance(inst, reboot_type="soft"), "RebootInstance")
    check(cl.GetInstance(inst)["status"] == "running", "instance runs after reboot")

    wait_ok(cl, cl.ModifyInstance(inst, beparams={"maxmem": 256, "minmem": 256}),
            "ModifyInstance")
    check(cl.GetInstance(inst)["beparams"]["maxmem"] == 256, "maxmem is 256")

    job = cl.GetInstanceInfo(inst)
    status = wait_ok(cl, job, "GetInstanceInfo")
    data = status["opresult"][0][inst]
    for key in ("name", "config_state", "run_state", "pnode", "snodes", "os", "nics",
                "disks", "hypervisor", "hv_actual", "be_actual", "disk_template"):
        check(key in data, "instance info has %s" % key)
    check(data["run_state"] == "up" and data["config_state"] == "up", "info: up")
    check(data["be_actual"]["maxmem"] == 256, "info: maxmem 256")
    status = wait_ok(cl, cl.GetInstanceInfo(inst, static=True), "GetInstanceInfo(static)")
    check(status["opresult"][0][inst]["run_state"] is None, "static info has no run_state")

    console = cl.GetInstanceConsole(inst)
    check(console["kind"] == "message" and console["instance"] == inst
          and "message" in console, "GetInstanceConsole: message kind")

    wait_ok(cl, cl.AddInstanceTags(inst, ["billing:42", "web"]), "AddInstanceTags")
    check(sorted(cl.GetInstanceTags(inst)) == ["billing:42", "web"], "GetInstanceTags")
    wait_ok(cl, cl.DeleteInstanceTags(inst, ["web"]), "DeleteInstanceTags")
    check(cl.GetInstanceTags(inst) == ["billing:42"], "tag removed")
    check("billing:42" in cl.GetInstance(inst)["tags"], "instance tags field")

    res = cl.Query("instance", ["name", "pnode", "status"])
    check(isinstance(res["fields"], list) and isinstance(res["data"], list),
          "Query(instance) has fields and data")
    row = [r for r in res["data"] if r[0][1] == inst][0]
    check(row[1] == [0, "node2"], "Query row cells are (status, value)")
    qf = cl.QueryFields("node")
    check(any(f["name"] == "mfree" for f in qf["fields"]), "QueryFields(node)")

    # Moving: live migration, a node evacuation and a node migration, each a job.
    wait_ok(cl, cl.MigrateInstance(inst, target_node="node1"), "MigrateInstance")
    check(cl.GetInstance(inst)["pnode"] == "node1", "MigrateInstance moved it to node1")
    wait_ok(cl, cl.EvacuateNode("node1", mode=rapi.NODE_EVAC_PRI), "EvacuateNode")
    check(cl.GetInstance(inst)["pnode"] != "node1", "EvacuateNode moved it off node1")
    pnode = cl.GetInstance(inst)["pnode"]
    wait_ok(cl, cl.MigrateNode(pnode), "MigrateNode")
    check(cl.GetInstance(inst)["pnode"] != pnode, "MigrateNode moved it off %s" % pnode)
    # Failover needs shared disks: the job fails, the instance stays.
    job = cl.FailoverInstance(inst)
    check(not cl.WaitForJobCompletion(job, period=0.2, retries=600),
          "FailoverInstance of a file instance fails")
    # Rename and reinstall (stopped, then started again by the reinstall job).
    wait_ok(cl, cl.ShutdownInstance(inst), "ShutdownInstance before rename")
    wait_ok(cl, cl.RenameInstance(inst, inst + "-r"), "RenameInstance")
    check(inst + "-r" in cl.GetInstances(), "renamed")
    wait_ok(cl, cl.RenameInstance(inst + "-r", inst), "RenameInstance back")
    wait_ok(cl, cl.ReinstallInstance(inst, os="noop"), "ReinstallInstance")
    check(cl.GetInstance(inst)["status"] == "running", "ReinstallInstance started it again")

    wait_ok(cl, cl.DeleteInstance(inst), "DeleteInstance")
    check(inst not in cl.GetInstances(), "instance is gone")
    try:
        cl.GetInstance(inst)
        check(False, "GetInstance of a removed instance fails")
    except rapi.GanetiApiError as err:
        check(err.code == 404, "removed instance: 404")

    print("OK: %d checks passed" % len(CHECKS))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:  # report the failed check and what passed before it
        print("FAILED after %d checks: %s: %s" % (len(CHECKS), type(err).__name__, err))
        for c in CHECKS[-5:]:
            print("  passed: %s" % c)
        sys.exit(1)
