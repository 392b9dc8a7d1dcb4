#!/usr/bin/env python3
"""t_compare: every column of every row of the imported tables equals the
simulated server's data, converted by the documented rules.

The expected values are computed here, independently of the C code, from
the raw API answers: DescribeIssueListWithPage pages plus DescribeIssue for
the detail-only columns, DescribeIterationList, DescribeProjectMembers.  The
project has 1234 issues, so a scan crosses page boundaries (500, 500, 234),
and a second run uses page_size 7.
"""
import datetime
import json
import urllib.request

from pgtest import Results, psql, scenario, setup_db

PROJECT = "big"
UNSET_ITERATION_DATE = -28800000

# column -> (field, fallback field, rule); rule: zero (0 is NULL), empty
# ("" is NULL), ts (ms epoch, 0/-28800000 NULL), json, plain, team, project, raw
ISSUE_COLUMNS = {
    "team": (None, None, "team"), "project": (None, None, "project"),
    "code": ("Code", None, "plain"), "type": ("Type", None, "empty"),
    "parent_type": ("ParentType", None, "empty"), "name": ("Name", None, "plain"),
    "description": ("Description", None, "plain"),
    "issue_status_id": ("IssueStatusId", None, "zero"),
    "issue_status_name": ("IssueStatusName", None, "empty"),
    "issue_status_type": ("IssueStatusType", None, "empty"),
    "priority": ("Priority", None, "priority"),
    "assignee_id": ("AssigneeId", "Assignee.Id", "zero"),
    "assignees": ("Assignees", None, "json"),
    "creator_id": ("CreatorId", "Creator.Id", "zero"),
    "iteration_id": ("IterationId", "Iteration.Id", "zero"),
    "iteration_code": ("Iteration.Code", None, "zero"),
    "start_date": ("StartDate", None, "ts"), "due_date": ("DueDate", None, "ts"),
    "created_at": ("CreatedAt", None, "ts"), "updated_at": ("UpdatedAt", None, "ts"),
    "completed_at": ("CompletedAt", None, "ts"),
    "working_hours": ("WorkingHours", None, "plain"),
    "story_point": ("StoryPoint", None, "empty"),
    "issue_type_id": ("IssueTypeId", None, "zero"),
    "issue_type_detail": ("IssueTypeDetail", None, "json"),
    "labels": ("Labels", None, "json"), "custom_fields": ("CustomFields", None, "json"),
    "parent_code": ("ParentCode", "Parent.Code", "zero"),
    "assignee": ("Assignee", None, "json"), "creator": ("Creator", None, "json"),
    "watchers": ("Watchers", None, "json"), "files": ("Files", None, "json"),
    "sub_tasks": ("SubTasks", None, "json"), "third_links": ("ThirdLinks", None, "json"),
    "project_module": ("ProjectModule", None, "json"),
    "requirement_type": ("RequirementType", None, "json"),
    "defect_type": ("DefectType", None, "json"), "epic": ("Epic", None, "json"),
    "parent": ("Parent", None, "json"), "raw": (None, None, "raw"),
}
ITERATION_COLUMNS = {
    "team": (None, None, "team"), "project": (None, None, "project"),
    "code": ("Code", None, "plain"), "name": ("Name", None, "plain"),
    "goal": ("Goal", None, "plain"), "status": ("Status", None, "empty"),
    "start_at": ("StartAt", None, "ts"), "end_at": ("EndAt", None, "ts"),
    "created_at": ("CreatedAt", None, "ts"), "updated_at": ("UpdatedAt", None, "ts"),
    "assignee_id": ("Assignee", None, "zero"), "creator_id": ("Creator", None, "zero"),
    "starter_id": ("Starter", None, "zero"), "completer_id": ("Completer", None, "zero"),
    "deleter_id": ("Deleter", None, "zero"),
    "wait_process_count": ("WaitProcessCount", None, "plain"),
    "processing_count": ("ProcessingCount", None, "plain"),
    "completed_count": ("CompletedCount", None, "plain"),
    "completed_percent": ("CompletedPercent", None, "plain"),
    "raw": (None, None, "raw"),
}
MEMBER_COLUMNS = {
    "team": (None, None, "team"), "project": (None, None, "project"),
    "id": ("Id", None, "plain"), "team_id": ("TeamId", None, "plain"),
    "name": ("Name", None, "plain"), "name_pinyin": ("NamePinYin", None, "plain"),
    "avatar": ("Avatar", None, "plain"), "email": ("Email", None, "plain"),
    "phone": ("Phone", None, "plain"),
    "email_validation": ("EmailValidation", None, "plain"),
    "phone_validation": ("PhoneValidation", None, "plain"),
    "global_key": ("GlobalKey", None, "plain"), "status": ("Status", None, "plain"),
    "roles": ("Roles", None, "json"), "raw": (None, None, "raw"),
}


def api(sim, action, body):
    """One OpenAPI call with the personal token; returns Response."""
    body = dict(body, Action=action)
    req = urllib.request.Request(sim.url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": "token secret-token"})
    with urllib.request.urlopen(req, timeout=60) as r:
        resp = json.load(r)["Response"]
    assert "Error" not in resp, resp
    return resp


def path(obj, dotted):
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def unset_object(v):
    """Coding's zero-filled 'not set' object."""
    if not isinstance(v, dict):
        return False
    for x in v.values():
        if isinstance(x, dict):
            if not unset_object(x):
                return False
        elif isinstance(x, list):
            if x:
                return False
        elif x not in (0, "", False, None):
            return False
    return True


def expected_value(item, spec):
    field, fallback, rule = spec
    if rule == "team":
        return "acme"
    if rule == "project":
        return PROJECT
    if rule == "raw":
        return item
    v = path(item, field)
    if v is None and fallback:
        v = path(item, fallback)
    if v is None or unset_object(v):
        return None
    if rule == "zero" and v == 0:
        return None
    if rule in ("empty", "priority") and v == "":
        return None
    if rule == "priority":
        return int(v)
    if rule == "ts":
        if v in (0, UNSET_ITERATION_DATE):
            return None
        return datetime.datetime.fromtimestamp(v / 1000, tz=datetime.timezone.utc)
    return v


def actual_value(v, spec):
    if spec[2] == "ts" and v is not None:
        return datetime.datetime.fromisoformat(v)
    return v


def compare(rows, items, columns, key):
    """Every column of every row equals the expected value."""
    got = {r[key]: r for r in rows}
    want = {path(i, columns[key][0]): i for i in items}
    assert len(rows) == len(got), "duplicate keys in the table"
    assert set(got) == set(want), "keys differ: only table %s, only server %s" % (
        sorted(set(got) - set(want))[:10], sorted(set(want) - set(got))[:10])
    mismatches = []
    for k, item in want.items():
        for col, spec in columns.items():
            e = expected_value(item, spec)
            a = actual_value(got[k].get(col), spec)
            if isinstance(e, float) or isinstance(a, float):
                same = e is not None and a is not None and abs(float(e) - float(a)) < 1e-9
            else:
                same = e == a
            if not same:
                mismatches.append("%s=%s %s: table %r, server %r" % (key, k, col, a, e))
    assert not mismatches, "%d mismatches, first: %s" % (len(mismatches), mismatches[:5])
    return len(want) * len(columns)


def table_rows(db, table):
    out = psql("SET timezone = 'UTC'; SELECT coalesce(json_agg(t), '[]') FROM %s t" % table, db=db)
    return json.loads(out)


def main():
    res = Results()
    db = "t_compare"
    with scenario(db, "--team", "acme", "--project", "%s:1234" % PROJECT,
                  "--token", "secret-token", "--seed", "7") as sim:
        setup_db(db, sim, PROJECT)
        items = []
        page = 1
        while True:
            data = api(sim, "DescribeIssueListWithPage",
                       {"ProjectName": PROJECT, "IssueType": "ALL", "PageNumber": page,
                        "PageSize": 500, "ShowSubIssues": True, "SortKey": "CODE",
                        "SortValue": "ASC"})["Data"]
            items += data["List"]
            if page >= data["TotalPage"]:
                break
            page += 1
        # detail-only columns: DescribeIssue's fields the list lacks
        merged = []
        for it in items:
            detail = api(sim, "DescribeIssue", {"ProjectName": PROJECT, "IssueCode": it["Code"]})["Issue"]
            m = dict(detail)
            m.update(it)
            merged.append(m)

        def issues():
            rows = table_rows(db, "coding.issues")
            n = compare(rows, merged, {k: v for k, v in ISSUE_COLUMNS.items() if k != "raw"}, "code")
            # raw is the list object, not the one merged with DescribeIssue
            raws = {r["code"]: r["raw"] for r in rows}
            assert all(raws[i["Code"]] == i for i in items), "raw differs from the list object"
            print("     %d issues, %d values compared" % (len(items), n))
        res.check("issues: every column equals the server's data (1234 rows, 3 pages)", issues)

        def issues_small_pages():
            psql("ALTER SERVER coding OPTIONS (ADD page_size '7')", db=db)
            try:
                out = psql("SELECT count(*), count(DISTINCT code) FROM coding.issues", db=db)
                assert out == "%d|%d" % (len(items), len(items)), out
            finally:
                psql("ALTER SERVER coding OPTIONS (DROP page_size)", db=db)
        res.check("issues: page_size 7 reads every issue exactly once", issues_small_pages)

        def iterations():
            its = []
            offset = 0
            while True:
                data = api(sim, "DescribeIterationList",
                           {"ProjectName": PROJECT, "Offset": offset, "Limit": 500})["Data"]
                its += data["List"]
                if len(data["List"]) < 500:
                    break
                offset += 1
            n = compare(table_rows(db, "coding.iterations"), its, ITERATION_COLUMNS, "code")
            assert any(i["StartAt"] == UNSET_ITERATION_DATE for i in its), "no unset dates in the data"
            print("     %d iterations, %d values compared" % (len(its), n))
        res.check("iterations: every column equals the server's data", iterations)

        def members():
            pid = api(sim, "DescribeProjectByName", {"ProjectName": PROJECT})["Project"]["Id"]
            ms = api(sim, "DescribeProjectMembers",
                     {"ProjectId": pid, "PageNumber": 1, "PageSize": 500})["Data"]["ProjectMembers"]
            n = compare(table_rows(db, "coding.project_members"), ms, MEMBER_COLUMNS, "id")
            print("     %d members, %d values compared" % (len(ms), n))
        res.check("project_members: every column equals the server's data", members)
    res.finish()


if __name__ == "__main__":
    main()
