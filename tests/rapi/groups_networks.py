#!/usr/bin/python3
"""Node groups, instance policies and networks through Ganeti's own Python RAPI client.

Run against a lab cluster of at least 3 nodes (node1 master, node2, node3) with the `noop`
OS, after eval "$(maguey lab env --dir DIR)". Exits non-zero on the first failed check.
"""

import os
import sys
from urllib.parse import urlparse

from ganeti.rapi import client as rapi

CHECKS = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    CHECKS.append(what)


def wait_ok(cl, job_id, what):
    check(str(job_id).isdigit(), "%s answers a job id (got %r)" % (what, job_id))
    if not cl.WaitForJobCompletion(job_id, period=0.2, retries=600):
        raise AssertionError("%s: job %s failed: %r" % (what, job_id, cl.GetJobStatus(job_id)))
    CHECKS.append("%s: job %s succeeded" % (what, job_id))


def wait_fail(cl, job_id, what, needle):
    check(str(job_id).isdigit(), "%s answers a job id" % what)
    check(not cl.WaitForJobCompletion(job_id, period=0.2, retries=600), "%s fails" % what)
    st = cl.GetJobStatus(job_id)
    check(needle in repr(st["opresult"]), "%s: %r in %r" % (what, needle, st["opresult"]))


def main():
    url = urlparse(os.environ["MAGUEY_RAPI_URL"])
    cl = rapi.GanetiRapiClient(
        url.hostname, port=url.port or 5080,
        username=os.environ["MAGUEY_RAPI_USER"],
        password=os.environ["MAGUEY_RAPI_PASSWORD"],
        curl_config_fn=rapi.GenericCurlConfig(cafile=os.environ["MAGUEY_RAPI_CA"]))

    info = cl.GetInfo()
    ip = info["ipolicy"]
    check(ip["vcpu-ratio"] == 4.0 and ip["minmax"][0]["max"]["memory-size"] == 32768,
          "GetInfo has the cluster ipolicy")
    # The cluster's policy through PUT /2/modify (Ganeti's ModifyCluster).
    wait_ok(cl, cl.ModifyCluster(ipolicy={"vcpu-ratio": 3.0, "spindle-ratio": 16.0}),
            "ModifyCluster ipolicy")
    ip = cl.GetInfo()["ipolicy"]
    check(ip["vcpu-ratio"] == 3.0 and ip["spindle-ratio"] == 16.0,
          "GetInfo shows the new cluster ipolicy")
    wait_fail(cl, cl.ModifyCluster(ipolicy={"minmax": [{"min": {"cpu-count": 4},
                                                        "max": {"cpu-count": 2}}]}),
              "ModifyCluster with a min above its max", "above max")
    check(cl.GetInfo()["ipolicy"]["vcpu-ratio"] == 3.0, "a refused ipolicy changed nothing")
    wait_ok(cl, cl.ModifyCluster(ipolicy={"vcpu-ratio": "default", "spindle-ratio": "default"}),
            "ModifyCluster back to the defaults")
    check(cl.GetInfo()["ipolicy"]["vcpu-ratio"] == 4.0, "the default ratio again")

    # Groups.
    wait_ok(cl, cl.CreateGroup("rack2", alloc_policy="last_resort"), "CreateGroup")
    check("rack2" in cl.GetGroups(), "GetGroups lists rack2")
    g = cl.GetGroup("rack2")
    check(g["alloc_policy"] == "last_resort" and g["node_cnt"] == 0, "GetGroup rack2")
    check(g["ipolicy"]["vcpu-ratio"] == 4.0, "a group's ipolicy inherits the cluster's")
    wait_ok(cl, cl.ModifyGroup("rack2", alloc_policy="preferred",
                               ipolicy={"vcpu-ratio": 2.0,
                                        "minmax": [{"min": {"memory-size": 128},
                                                    "max": {"memory-size": 512}}]}),
            "ModifyGroup")
    g = cl.GetGroup("rack2")
    check(g["alloc_policy"] == "preferred", "ModifyGroup changed the policy")
    check(g["custom_ipolicy"]["vcpu-ratio"] == 2.0 and g["ipolicy"]["vcpu-ratio"] == 2.0,
          "ModifyGroup set the group's ipolicy")
    wait_ok(cl, cl.RenameGroup("rack2", "rackB"), "RenameGroup")
    check("rackB" in cl.GetGroups() and "rack2" not in cl.GetGroups(), "renamed group")
    wait_ok(cl, cl.AddGroupTags("rackB", ["site:b"]), "AddGroupTags")
    check(cl.GetGroupTags("rackB") == ["site:b"], "GetGroupTags")
    wait_ok(cl, cl.DeleteGroupTags("rackB", ["site:b"]), "DeleteGroupTags")
    wait_ok(cl, cl.AssignGroupNodes("rackB", ["node3"]), "AssignGroupNodes")
    check(cl.GetGroup("rackB")["node_list"] == ["node3"], "node3 is in rackB")
    wait_fail(cl, cl.DeleteGroup("rackB"), "DeleteGroup of a group with nodes", "not empty")

    # Networks.
    wait_ok(cl, cl.CreateNetwork("net1", "10.77.0.0/29", gateway="10.77.0.1",
                                 add_reserved_ips="10.77.0.2", tags="lan"), "CreateNetwork")
    check("net1" in cl.GetNetworks(), "GetNetworks lists net1")
    n = cl.GetNetwork("net1")
    check(n["network"] == "10.77.0.0/29" and n["gateway"] == "10.77.0.1", "GetNetwork")
    check(n["free_count"] == 4 and n["map"] == "XXX....X", "the pool of net1")
    wait_ok(cl, cl.ConnectNetwork("net1", "rackB", "bridged", "br77"), "ConnectNetwork")
    check(cl.GetNetwork("net1")["group_list"][0][:3] == ["rackB", "bridged", "br77"],
          "net1 is connected to rackB")
    wait_ok(cl, cl.ModifyNetwork("net1", add_reserved_ips=["10.77.0.3"]), "ModifyNetwork")
    check(cl.GetNetwork("net1")["free_count"] == 3, "the reservation left the pool")

    # An instance with ip=pool in rackB (the allocator picks node3, the only node there).
    job = cl.CreateInstance("create", "netinst", "diskless", [], [
        {"network": "net1", "ip": "pool"}], os="noop", iallocator="hail",
        beparams={"maxmem": 128, "minmem": 128}, group_name="rackB")
    wait_ok(cl, job, "CreateInstance with ip=pool")
    i = cl.GetInstance("netinst")
    check(i["pnode"] == "node3", "the instance is in rackB")
    check(i["nic.ips"] == ["10.77.0.4"], "the NIC got the first free address (%r)" % i["nic.ips"])
    check(cl.GetNetwork("net1")["inst_list"] == ["netinst"], "net1 lists netinst")
    wait_fail(cl, cl.DisconnectNetwork("net1", "rackB"), "DisconnectNetwork in use", "in use")
    wait_fail(cl, cl.DeleteNetwork("net1"), "DeleteNetwork in use", "in use")
    # The group's instance policy: 1 GiB of memory is refused.
    job = cl.CreateInstance("create", "bigmem", "diskless", [], [], os="noop",
                            pnode="node3", beparams={"maxmem": 1024, "minmem": 1024})
    wait_fail(cl, job, "CreateInstance over the ipolicy", "instance policy")

    wait_ok(cl, cl.DeleteInstance("netinst"), "DeleteInstance")

    # Between groups (Debian's client has no method for these: the raw requests).
    wait_ok(cl, cl.CreateInstance("create", "mover", "diskless", [], [], os="noop",
                                  pnode="node1", beparams={"maxmem": 128, "minmem": 128}),
            "CreateInstance mover")
    wait_ok(cl, cl._SendRequest("PUT", "/2/instances/mover/change-group", [("dry-run", 1)],
                                {"target_groups": ["rackB"]}), "change-group dry run")
    check(cl.GetInstance("mover")["pnode"] == "node1", "a dry run moves nothing")
    wait_ok(cl, cl._SendRequest("PUT", "/2/instances/mover/change-group", None,
                                {"target_groups": ["rackB"], "early_release": False}),
            "PUT /2/instances/mover/change-group")
    check(cl.GetInstance("mover")["pnode"] == "node3", "mover is in rackB")
    wait_ok(cl, cl._SendRequest("PUT", "/2/groups/rackB/evacuate", None,
                                {"target_groups": ["default"], "sequential": True}),
            "PUT /2/groups/rackB/evacuate")
    check(cl.GetInstance("mover")["pnode"] in ("node1", "node2"), "mover is back in default")
    wait_ok(cl, cl.DeleteInstance("mover"), "DeleteInstance mover")
    wait_ok(cl, cl.DisconnectNetwork("net1", "rackB"), "DisconnectNetwork")
    # Ganeti 3.1's rename; older clients (Debian's) lack RenameNetwork: the raw request.
    wait_ok(cl, cl._SendRequest("PUT", "/2/networks/net1/rename", None, {"new_name": "net2"}),
            "PUT /2/networks/net1/rename")
    wait_ok(cl, cl.AddNetworkTags("net2", ["x"]), "AddNetworkTags")
    check("x" in cl.GetNetworkTags("net2"), "GetNetworkTags")
    wait_ok(cl, cl.DeleteNetwork("net2"), "DeleteNetwork")
    check("net2" not in cl.GetNetworks(), "net2 is gone")
    wait_ok(cl, cl.AssignGroupNodes("default", ["node3"]), "AssignGroupNodes back")
    wait_ok(cl, cl.DeleteGroup("rackB"), "DeleteGroup")
    check("rackB" not in cl.GetGroups(), "rackB is gone")

    print("OK: %d checks passed" % len(CHECKS))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:
        print("FAILED after %d checks: %s: %s" % (len(CHECKS), type(err).__name__, err))
        for c in CHECKS[-5:]:
            print("  passed: %s" % c)
        sys.exit(1)
