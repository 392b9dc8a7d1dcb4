#!/usr/bin/env python3
"""coding_sim.py: a simulated Coding (coding.net) OpenAPI server.

This is the test fixture and the demo backend of coding_fdw.  It speaks the
part of Coding's OpenAPI that the extension uses (``POST /open-api`` with a
JSON body naming an ``Action``).  It serves deterministic generated data, or
data loaded from a dump, and has control endpoints under ``/_sim`` that tests
use to inject faults, read a request log, change data and receive Service
Hook webhooks.  It uses the Python 3 standard library only.

Usage::

    coding_sim.py --host 127.0.0.1 --port 0 --port-file /tmp/x.port --team acme \\
        --project backend:2000 --project mobile:30 --token secret-token \\
        --oauth-token oauth-token --limited-token limited-token:issues --seed 42 \\
        [--data file.json] [--rate-limit 0] [--prerender] [--quiet] [--anchor-ms MS]

The server writes the bound port to --port-file (temp file + rename), prints
``coding_sim listening on http://HOST:PORT`` and exits with status 0 on SIGTERM
or SIGINT.

Actions: DescribeCodingCurrentUser, DescribeProjectByName,
DescribeIssueListWithPage, DescribeIssue, DescribeIterationList and
DescribeProjectMembers.  Any other Action gets InvalidAction.

Control endpoints (no auth, JSON in and out, never rate limited, never logged):

    GET    /_sim/health                          {"ok": true}
    POST   /_sim/fault                           queue a fault {"type", "action"="*", "count"=1, "skip"=0, ...}
    GET    /_sim/faults   DELETE /_sim/faults    list / clear pending faults
    GET|POST /_sim/rate_limit                    {"per_second": N} (0 = off)
    GET    /_sim/log[?action=A&since=ID]         {"requests": [...]};  DELETE /_sim/log clears
    GET    /_sim/log/count[?action=A]            {"count": n}
    POST   /_sim/reset                           {"seed", "projects": {"name": n}, "team"}: regenerate
    GET    /_sim/dump[?project=P]                the whole model (the --data format)
    POST|PATCH|DELETE|GET /_sim[/projects/P]/issues[/CODE]       (also iterations[/CODE], members[/ID])
    POST|GET|DELETE /_sim/webhook                configure / show / disable Service Hook delivery
    GET|DELETE /_sim/webhook/deliveries          delivery attempts
    Fault types: http_500 http_502 http_429 rate_limited auth_failure error delay
    stall_mid_body truncated_json invalid_json wrong_types huge_body drop_connection
    raw_body (HTTP "status" (default 200) with "body" (text) or "body_b64" (bytes) as given:
              for fuzzing, and for gateways answering without Coding's envelope)
    chunked (the normal answer with Transfer-Encoding: chunked, no Content-Length,
    in "chunk" bytes a chunk, default 4096)

The API notes are in /work/shared/coding-api.md.  /work/shared/real-samples/*.json
holds bodies a real server sent, and those win where the notes disagree.

Documented choices (where Coding's real behaviour is unknown, or the sim picks
one reading):

* Transport.  Every API answer, errors included, is HTTP 200 with
  ``Content-Type: application/json; charset=utf-8`` and a Content-Length.
  HTTP/1.1 keep-alive works.  Bodies are compact UTF-8 JSON without \\u escapes.
  The Action comes from the body's ``Action``; failing that, from
  ``?Action=``/``?action=``; failing that, from the path suffix
  ``/open-api/<Action>``.  The request Content-Type is not checked.  An empty
  body, or one that is not a JSON object, counts as "not valid JSON".  Methods
  other than POST on /open-api get HTTP 405.  Chunked request bodies are
  accepted.
* Order of checks: body JSON, then Action present, then rate limit (per
  Action), then auth, then Action known, then token scope, then project, then
  the other parameters.
* Error RequestIds are uuid5(NAMESPACE_URL, "action|code|message"), so
  expected test output stays stable.  Success RequestIds are random uuid4.
  With --prerender, a cached body repeats its RequestId.
* Auth.  ``Authorization: token X`` is accepted for --token and
  --limited-token values; ``Authorization: Bearer X`` for --oauth-token values.
  Scheme names are case-insensitive.  Anything else (Basic, X-API-Key, a token
  under the wrong scheme) gets AuthFailure "User not found, authorization
  invalid".
  Identities: the k-th configured token authenticates as the k-th "identity"
  user, counting all --token values in order, then --oauth-token, then
  --limited-token.  Identities 0, 1 and 2 are always generated and belong to
  every project (owner, admin, developer).  Any further identities are team
  users in no project.
  A limited token that lacks the scope an Action needs gets
  InvalidParameterValue with an EMPTY message, which is how Coding reports a
  lost permission.  Scopes: issues (DescribeIssueListWithPage,
  DescribeIssue), iterations (DescribeIterationList), members
  (DescribeProjectMembers).  Tokens are never logged or echoed.
* Rate limit (--rate-limit N or POST /_sim/rate_limit): a sliding one-second
  window per Action.  Only ACCEPTED requests count; a rejected request does
  not.
* Numbers in requests: ints, integral floats and decimal strings are
  accepted.  Booleans accept true/false, 0/1 and "true"/"false".
* DescribeIssueListWithPage paging: PageNumber 0 (or absent) means page 1;
  a negative PageNumber is InvalidParameterValue.  PageSize defaults to 20,
  values above 500 are capped to 500 (the echoed PageSize is the one used),
  and values below 1 are InvalidParameterValue.  A page past the end has an
  empty List.  Sort ties are broken by Code, in the same direction.
  ExcludeSubTask=true also hides SUB_TASK.
* DescribeIssueListWithPage Conditions: an array (a single object is also
  accepted), all ANDed; Keys are case-sensitive.  A csv Value matches any of
  its elements.  ``ConstValue: "UNSPECIFIC"`` is allowed only on ASSIGNEE,
  ITERATION, PRIORITY, DUE_DATE, START_DATE, PARENT and MODULE, and matches
  "not set"; given together with a Value it matches "not set OR one of the
  values".  Date ranges ``A_B`` are closed intervals in China time (UTC+8).
  A single date without ``_`` means that whole day (or that second).  Unset
  (0) dates never match a range, and ``A > B`` matches nothing.  CUSTOM
  matches when ValueString equals the Value or one of its csv elements.
* DescribeIterationList: ``Offset`` is a 0-based PAGE index (TC sends
  Offset = page-1).  ``Limit`` defaults to 20 and is capped at 500; Limit < 1
  or Offset < 0 is InvalidParameterValue.  Data carries Page (= Offset+1),
  PageSize, TotalPage, TotalRow and List, sorted by Code DESC.  The
  StartDate/EndDate filters never match an unset (-28800000) StartAt/EndAt.
  The counts come from the issues in the iteration, sub-tasks included.
  CompletedPercent is a float from 0.0 to 100.0 with 2 decimals.  A single
  string for Status or Assignee is read as a one-element array.
* DescribeProjectMembers: PageNumber 0 means 1; PageSize defaults to 20, is
  capped at 500, and < 1 is InvalidParameterValue.  Sorted by Id ASC.  RoleId
  matches any of a member's roles.
* DescribeIssue user objects (Assignee, Creator, Watchers, ...) fill only
  Id/Status/Avatar/Name and leave Email/TeamId/Phone/GlobalKey/TeamGlobalKey
  empty, exactly as the real sample does.  "Not set" is the zero-filled
  object.
* Data.  Generation is deterministic for a given --seed.  Each project uses
  ``random.Random(f"{seed}/{name}")``, so adding a project does not change the
  others.  Timestamps are anchored at 2026-11-01 00:00 +08:00 (--anchor-ms),
  not at "now", so generated data is identical on every run.  CreatedAt spans
  the two years before the anchor and grows with Code.  About 5% of issues
  share UpdatedAt with their predecessor, for cursor-tie tests.
* Mutations use the wall clock: UpdatedAt = max(now_ms, previous
  UpdatedAt + 1, last UpdatedAt handed out in that project + 1), so changes
  within a project are strictly ordered.  An explicit UpdatedAt or CreatedAt
  in a mutation body wins.  Mutation bodies take the PascalCase list or
  detail fields, plus the conveniences IterationCode, EpicCode, ModuleId,
  DefectTypeId, RequirementTypeId and WatcherIds.  Labels may be given by id
  or name.  Unknown fields are rejected with HTTP 400.  Deleting an iteration
  moves its issues out of it (IterationId 0) and bumps their UpdatedAt, with
  no webhook for those issues.  Deleting a parent leaves its sub-tasks, whose
  Parent then renders zero-filled.
* Reset regenerates the data only: faults, log, rate limit and webhook
  configuration stay.
* Faults are checked before any processing, auth included.  The first
  queued fault whose action matches ("*" matches all) decides.  If its
  ``skip`` is > 0, the request passes untouched and skip is decremented.
  Otherwise the fault is applied and ``count`` is decremented; count <= 0
  means "until cleared".
* --prerender caches each successful body by (Action, authenticated user,
  canonical request JSON).  The user is part of the key because
  DescribeCodingCurrentUser depends on it.  Any mutation or reset empties the
  cache.
* The log (GET /_sim/log) keeps the last 200000 API requests; ids keep
  growing.  ``body`` is the parsed request JSON, or null when it did not
  parse.
* Webhooks.  Payloads mirror the real Service Hook captures: snake_case, a
  copy of the issue under its lower-case type key, ``typeZh``/``statusZh``,
  and unset dates left out.  The ``action`` values are invented
  (create/update/delete, added/role_updated/removed).  A mutation may pass
  ``?event=NAME`` to send a different event name (e.g.
  ISSUE_STATUS_UPDATED).  Deliveries are never retried and time out after
  5 s.
"""

import argparse
import base64
import binascii
import collections
import datetime
import gc
import hashlib
import hmac
import json
import math
import os
import queue
import random
import re
import signal
import socket
import string
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

#: China Standard Time offset: Coding is a Chinese service and its "unset"
#: iteration date -28800000 is 1970-01-01 00:00 +08:00.
CST_OFFSET_MS = 8 * 3600 * 1000
UNSET_ITER_DATE = -CST_OFFSET_MS
DAY_MS = 86400000
#: Default anchor of generated timestamps: 2026-11-01 00:00:00 +08:00.
DEFAULT_ANCHOR_MS = 1793462400000
MAX_PAGE_SIZE = 500
MAX_LOG = 200000
MAX_BODY = 16 * 1024 * 1024

ISSUE_TYPES = ("DEFECT", "REQUIREMENT", "MISSION", "EPIC")
ALL_CATEGORIES = ("DEFECT", "REQUIREMENT", "MISSION", "EPIC", "SUB_TASK")
STATUS_TYPES = ("TODO", "PROCESSING", "COMPLETED")
ITERATION_STATUSES = ("WAIT_PROCESS", "PROCESSING", "COMPLETED")
SORT_KEYS = ("STATUS", "CREATED_AT", "PRIORITY", "UPDATED_AT", "DUE_DATE", "CODE",
             "JOIN_ITERATION_AT", "STATUS_TYPE", "ASSIGNEE", "PROJECT_ID",
             "ISSUE_STATUS_ID", "ISSUE_ITERATION_SORT", "ISSUE_ROADMAP_SORT",
             "PARENT_ID", "COMPLETED_AT")
CONDITION_KEYS = ("DEFECT_TYPE", "REQUIREMENT_TYPE", "MISSION_TYPE", "PRIORITY", "DUE_DATE",
                  "UPDATED_AT", "CREATED_AT", "START_DATE", "ASSIGNEE", "CREATOR", "WATCHER",
                  "MODULE", "LABEL", "STATUS", "STATUS_TYPE", "KEYWORD", "ISSUE_TYPE",
                  "ISSUE_SUB_TYPE", "WORKING_HOURS", "ITERATION", "PARENT", "CUSTOM")
UNSPECIFIC_KEYS = ("ASSIGNEE", "ITERATION", "PRIORITY", "DUE_DATE", "START_DATE", "PARENT", "MODULE")

#: Which scope each Action needs; None = always allowed.
ACTIONS = {
    "DescribeCodingCurrentUser": None,
    "DescribeProjectByName": None,
    "DescribeIssueListWithPage": "issues",
    "DescribeIssue": "issues",
    "DescribeIterationList": "iterations",
    "DescribeProjectMembers": "members",
}
SCOPES = ("issues", "iterations", "members")

AUTH_MESSAGE = "User not found, authorization invalid"

ROLE_DEFS = {
    1: ("ProjectMember", "开发"),
    2: ("ProjectAdmin", "管理员"),
    3: ("ProjectOwner", "项目所有者"),
    4: ("ProjectGuest", "受限成员"),
    5: ("ProjectMember", "测试"),
}

EVENT_NAMES = {
    "ISSUE_CREATED": "创建事项", "ISSUE_UPDATED": "更新事项信息", "ISSUE_DELETED": "删除事项",
    "ISSUE_STATUS_UPDATED": "修改事项状态", "ISSUE_ASSIGNEE_CHANGED": "修改事项处理人",
    "ISSUE_ITERATION_CHANGED": "修改事项所属迭代", "ISSUE_RELATIONSHIP_CHANGED": "修改事项关联关系",
    "ISSUE_HOUR_RECORD_UPDATED": "更新事项工时", "ISSUE_COMMENT_CREATED": "评论事项",
    "ITERATION_CREATED": "创建迭代", "ITERATION_UPDATED": "更新迭代", "ITERATION_DELETED": "删除迭代",
    "ITERATION_PLANNED": "规划迭代",
    "MEMBER_CREATED": "添加项目成员", "MEMBER_ROLE_UPDATED": "修改项目成员角色",
    "MEMBER_DELETED": "删除项目成员",
}

ZERO_USER = {"Id": 0, "Status": 0, "Avatar": "", "Name": "", "Email": "", "TeamId": 0,
             "Phone": "", "GlobalKey": "", "TeamGlobalKey": ""}
ZERO_TYPE_DETAIL = {"Id": 0, "Name": "", "IssueType": "", "Description": "", "IsSystem": False}
ZERO_LIST_ITERATION = {"Code": 0, "Name": "", "Status": "", "Id": 0}
ZERO_DETAIL_ITERATION = {"Code": 0, "Name": "", "Status": ""}


def now_ms():
    """Wall-clock milliseconds since the epoch (used by mutations only)."""
    return int(time.time() * 1000)


def dumps(obj):
    """Compact UTF-8 JSON bytes: what the wire carries (no \\u escapes)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def day_start_ms(d):
    """Milliseconds of 00:00:00.000 +08:00 on date ``d``."""
    return (d - datetime.date(1970, 1, 1)).days * DAY_MS - CST_OFFSET_MS


def ms_to_cst_date(ms):
    """The China-time calendar date containing epoch-ms ``ms``."""
    return datetime.date(1970, 1, 1) + datetime.timedelta(days=(ms + CST_OFFSET_MS) // DAY_MS)


def error_request_id(action, code, message):
    """Deterministic RequestId of an error envelope (stable test output)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{action}|{code}|{message}"))


class ApiError(Exception):
    """An OpenAPI error: rendered as the Response.Error envelope (HTTP 200)."""

    def __init__(self, code, message):
        """Keep the Coding error code and message."""
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ControlError(Exception):
    """A control-endpoint error: rendered as ``{"error": msg}`` with an HTTP status."""

    def __init__(self, status, message):
        """Keep the HTTP status and message."""
        super().__init__(message)
        self.status = status
        self.message = message


def missing(name):
    """The MissingParameter error naming ``name`` (Tencent-Cloud wording)."""
    return ApiError("MissingParameter", f"The request is missing a required parameter `{name}`.")


def invalid(name, value=None, why=None):
    """An InvalidParameterValue error naming parameter ``name``."""
    msg = f"The value of parameter `{name}` is invalid"
    if value is not None:
        msg += f": {json.dumps(value, ensure_ascii=False)}"
    if why:
        msg += f" ({why})"
    return ApiError("InvalidParameterValue", msg + ".")


# --------------------------------------------------------------------------
# Parameter coercion
# --------------------------------------------------------------------------

_INT_RE = re.compile(r"^\s*-?\d+\s*$")


def as_int(value, name, default=None, required=False):
    """Read an integer parameter: int, integral float or decimal string."""
    if value is None:
        if required:
            raise missing(name)
        return default
    if isinstance(value, bool):
        raise invalid(name, value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_RE.match(value):
        return int(value)
    raise invalid(name, value)


def as_bool(value, name, default=False):
    """Read a boolean parameter: true/false, 0/1, "true"/"false"."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise invalid(name, value)


def as_str(value, name, required=False):
    """Read a string parameter (numbers are accepted and stringified)."""
    if value is None or (required and value == ""):
        if required:
            raise missing(name)
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise invalid(name, value)


# --------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------

class Issue:
    """One issue, stored compactly; list and detail shapes are rendered on demand.

    ``Type`` is derived from ``type_id`` (the issue type's IssueType), the
    status fields from ``status_id`` and the Iteration object from
    ``iteration`` (a Code, 0 = none), so the record cannot contradict itself.
    """

    __slots__ = ("code", "type_id", "parent_type", "name", "description", "iteration",
                 "status_id", "priority", "assignee_id", "assignees", "start_date", "due_date",
                 "working_hours", "creator_id", "story_point", "created_at", "updated_at",
                 "completed_at", "custom_fields", "parent_code", "epic_code", "label_ids",
                 "watcher_ids", "module_id", "requirement_type_id", "defect_type_id", "files",
                 "third_links")

    def __init__(self, code):
        """An issue with every field "not set"."""
        self.code = code
        self.type_id = 0
        self.parent_type = ""
        self.name = ""
        self.description = ""
        self.iteration = 0
        self.status_id = 0
        self.priority = ""
        self.assignee_id = 0
        self.assignees = ()
        self.start_date = 0
        self.due_date = 0
        self.working_hours = 0
        self.creator_id = 0
        self.story_point = ""
        self.created_at = 0
        self.updated_at = 0
        self.completed_at = 0
        self.custom_fields = ()      # tuple of (field id, ValueString)
        self.parent_code = 0
        self.epic_code = 0
        self.label_ids = ()
        self.watcher_ids = ()
        self.module_id = 0
        self.requirement_type_id = 0
        self.defect_type_id = 0
        self.files = ()
        self.third_links = ()


class Project:
    """A project with its reference data, members, iterations and issues.

    ``version`` grows on every mutation; derived data (children index,
    iteration counts, query results) is cached against it.
    """

    def __init__(self, name):
        """An empty project (filled by the generator or the loader)."""
        self.name = name
        self.info = {}                 # DescribeProjectByName shape
        self.issue_types = {}          # id -> IssueTypeDetail dict
        self.category_type = {}        # category -> system issue type id
        self.statuses = {}             # id -> {"Id","Name","Type","IssueType"}
        self.status_by_cat = {}        # (category, status type) -> id
        self.labels = {}               # id -> {"Id","Name","Color"}
        self.modules = {}              # id -> {"Id","Name"}
        self.defect_types = {}         # id -> {"Id","Name","IconUrl"}
        self.requirement_types = {}    # id -> {"Id","Name"}
        self.custom_fields = {}        # id -> {"Id","Name"}
        self.members = {}              # id -> ProjectMembers item dict
        self.iterations = {}           # code -> iteration dict (list shape minus counts)
        self.issues = {}               # code -> Issue
        self.issue_id_base = 0
        self.iteration_id_base = 0
        self.next_code = 1
        self.next_iteration_code = 1
        self.clock = 0                 # last UpdatedAt handed out by a mutation
        self.version = 0
        self._derived = {}             # name -> (version, value)
        self._query_cache = collections.OrderedDict()

    @property
    def id(self):
        """The project Id (DescribeProjectByName.Project.Id)."""
        return self.info["Id"]

    def touch(self):
        """Record a mutation: bump the version so cached derived data is rebuilt."""
        self.version += 1
        self._query_cache.clear()

    def tick(self, previous=0):
        """Next UpdatedAt for a mutation: monotonic within the project."""
        t = max(now_ms(), previous + 1, self.clock + 1)
        self.clock = t
        return t

    def derived(self, key, build):
        """Return cached derived data ``key``, rebuilding it when stale."""
        hit = self._derived.get(key)
        if hit is not None and hit[0] == self.version:
            return hit[1]
        value = build()
        self._derived[key] = (self.version, value)
        return value

    def children(self):
        """parent code -> sorted list of sub-task codes."""
        def build():
            """Scan all issues once."""
            idx = {}
            for i in self.issues.values():
                if i.parent_code:
                    idx.setdefault(i.parent_code, []).append(i.code)
            for v in idx.values():
                v.sort()
            return idx
        return self.derived("children", build)

    def iteration_counts(self):
        """iteration code -> [todo, processing, completed] issue counts."""
        def build():
            """Scan all issues once."""
            counts = {}
            st = self.statuses
            for i in self.issues.values():
                if i.iteration:
                    c = counts.get(i.iteration)
                    if c is None:
                        c = counts[i.iteration] = [0, 0, 0]
                    t = st[i.status_id]["Type"] if i.status_id in st else "TODO"
                    c[STATUS_TYPES.index(t)] += 1
            return counts
        return self.derived("iteration_counts", build)

    def issue_type(self, i):
        """The Type (category) of issue ``i``."""
        d = self.issue_types.get(i.type_id)
        return d["IssueType"] if d else ""


class Model:
    """The whole simulated team: users, identities and projects, under one lock."""

    def __init__(self):
        """An empty model (filled by generate_model or load_model)."""
        self.lock = threading.RLock()
        self.seed = 0
        self.anchor = DEFAULT_ANCHOR_MS
        self.team = {}                 # {"Id","Name","Domain",...}
        self.users = {}                # id -> DescribeCodingCurrentUser.User dict
        self.identities = []           # user ids the configured tokens map to, in order
        self.projects = collections.OrderedDict()
        self.version = 0

    def project(self, name):
        """Project by name, or None."""
        return self.projects.get(name)

    def project_by_id(self, pid):
        """Project by Id, or None."""
        for p in self.projects.values():
            if p.id == pid:
                return p
        return None

    def first_project(self):
        """The first project (control paths without a project part use it)."""
        return next(iter(self.projects.values()), None)

    def bump(self):
        """Record a mutation anywhere (clears response caches)."""
        self.version += 1

    def user_obj(self, p, uid):
        """Issue-side user object {Id,Status,Avatar,Name,Email,...} for ``uid``."""
        if not uid:
            return ZERO_USER
        m = p.members.get(uid) if p is not None else None
        if m is None:
            m = self.users.get(uid)
        if m is None:
            return dict(ZERO_USER, Id=uid)
        return {"Id": uid, "Status": m.get("Status", 1), "Avatar": m.get("Avatar", ""),
                "Name": m.get("Name", ""), "Email": "", "TeamId": 0, "Phone": "",
                "GlobalKey": "", "TeamGlobalKey": ""}

    def person(self, p, uid):
        """Member or team user dict for ``uid`` (None when unknown)."""
        m = p.members.get(uid) if p is not None else None
        return m if m is not None else self.users.get(uid)


# --------------------------------------------------------------------------
# Deterministic data generation
# --------------------------------------------------------------------------

SURNAMES = [("张", "zhang"), ("王", "wang"), ("李", "li"), ("刘", "liu"), ("陈", "chen"),
            ("杨", "yang"), ("赵", "zhao"), ("黄", "huang"), ("周", "zhou"), ("吴", "wu"),
            ("徐", "xu"), ("孙", "sun"), ("马", "ma"), ("朱", "zhu"), ("胡", "hu")]
GIVEN = [("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"),
         ("磊", "lei"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"), ("杰", "jie"),
         ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("霞", "xia"), ("平", "ping")]
ENGLISH_NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan",
                 "Judy", "Mallory", "Oscar", "Peggy", "Trent", "Victor", "Walter"]
EN_VERBS = ["Fix", "Add", "Refactor", "Support", "Improve", "Remove", "Document", "Optimize",
            "Investigate", "Migrate"]
EN_OBJECTS = ["login timeout", "export to CSV", "dark mode", "search index", "webhook retries",
              "pagination", "OAuth refresh", "audit log", "rate limiter", "PDF preview",
              "user avatar upload", "i18n strings", "cache eviction", "API v2 client"]
ZH_VERBS = ["修复", "新增", "优化", "重构", "支持", "排查", "移除", "完善"]
ZH_OBJECTS = ["登录超时问题", "报表导出", "消息推送", "搜索结果排序", "权限校验", "文件上传",
              "首页加载速度", "支付回调", "数据同步", "迭代看板", "移动端适配", "日志采集"]
EMOJI = ["😀", "🚀", "🐛", "✨", "🔥"]
TRICKY_DESCRIPTIONS = [
    'He said "hello" and left.\nPath: C:\\temp\\new\\file.txt\n\'; DROP TABLE x; --',
    "Line 1\nLine 2\r\nTabs\there and a backslash \\ and a quote \"",
    "SQL: '; DROP TABLE x; -- and $$dollar$$ quoting, 100% done_",
    "Emoji in text 😀🚀 and 中文描述，包含\"引号\"与\\反斜杠\n第二行",
    "{\"looks\": \"like json\", \"n\": [1, 2, 3]}\n\\N is not null",
]
PLAIN_DESCRIPTIONS = [
    "", "", "", "",
    "复现步骤：\n1. 打开页面\n2. 点击按钮\n\n期望结果：正常显示",
    "## Background\nUsers asked for this in the forum.\n\n- [ ] design\n- [ ] implement",
    "See the attached screenshot.",
    "![image.png](https://coding-net-production-file-ci.codehub.cn/knowledge/demo.png)\n\n详见截图",
]
LABEL_DEFS = [("bug", "#D0021B"), ("前端", "#5A606B"), ("backend", "#2D9CDB"),
              ("性能", "#F5A623"), ("需要讨论 💬", "#7ED321"), ("StreamRead", "#5A606B")]
MODULE_NAMES = ["后端服务", "前端 Web", "移动端", "API"]
DEFECT_TYPE_NAMES = ["功能缺陷", "性能问题", "界面优化", "安全漏洞"]
REQUIREMENT_TYPE_NAMES = ["功能需求", "技术需求", "体验优化"]
CUSTOM_FIELD_NAMES = ["目标版本", "客户", "Severity"]
CUSTOM_VALUES = {"目标版本": ["v1.0", "v1.1", "v2.0"], "客户": ["阿里巴巴", "腾讯", "ACME Corp"],
                 "Severity": ["critical", "major", "minor"]}
TYPE_DETAILS = {
    "DEFECT": ("缺陷", "缺陷是指软件不符合需求、设计或用户预期的问题。"),
    "REQUIREMENT": ("需求", "需求是指用户或产品期望系统具备的功能与特性。"),
    "MISSION": ("任务", "任务是指为实现某个目标或需求所进行的具体活动。"),
    "EPIC": ("史诗", "史诗是一组相关需求的集合，通常跨越多个迭代。"),
    "SUB_TASK": ("子工作项", "子工作项是对需求或任务的进一步拆分。"),
}
STATUS_NAMES = {"TODO": "未开始", "PROCESSING": "处理中", "COMPLETED": "已完成"}
STATUS_ZH = {"TODO": "未开始", "PROCESSING": "进行中", "COMPLETED": "已完成"}
TYPE_ZH = {"DEFECT": "缺陷", "REQUIREMENT": "需求", "MISSION": "任务", "EPIC": "史诗",
           "SUB_TASK": "子工作项"}
IDENTITY_DEFS = [("王小码", "wxm|wangxiaoma", "coding"), ("OAuth 集成 Bot", "OAuth jc Bot", "oauthbot"),
                 ("只读 Viewer", "zd Viewer|zhidu Viewer", "viewer")]


def _global_key(rng):
    """A random Coding GlobalKey-like string (10 letters)."""
    return "".join(rng.choice(string.ascii_letters) for _ in range(10))


def _avatar(rng):
    """A plausible Coding avatar URL."""
    key = "".join(rng.choice(string.ascii_letters) for _ in range(20))
    return f"https://coding-net-production-static-ci.codehub.cn/WM-TEXT-AVATAR-{key}.jpg"


def make_user(uid, name, pinyin, gkey, rng, team_id, email=None, status=1):
    """A DescribeCodingCurrentUser.User-shaped dict."""
    if email is None:
        email = f"{gkey.lower()}@example.com"
    return {"Id": uid, "Status": status, "Email": email, "GlobalKey": gkey,
            "Avatar": _avatar(rng), "Gravatar": "", "Name": name, "NamePinYin": pinyin,
            "Phone": "", "PhoneValidation": 0, "EmailValidation": 1 if email else 0,
            "PhoneRegionCode": "+86", "Region": "cn", "TeamId": team_id}


def member_from_user(u, roles):
    """A ProjectMembers item built from a team user and role ids."""
    return {"Id": u["Id"], "TeamId": u["TeamId"], "Name": u["Name"], "NamePinYin": u["NamePinYin"],
            "Avatar": u["Avatar"], "Email": u["Email"], "Phone": u["Phone"],
            "EmailValidation": u["EmailValidation"], "PhoneValidation": u["PhoneValidation"],
            "GlobalKey": u["GlobalKey"], "Status": u["Status"], "Roles": roles_list(roles)}


def roles_list(role_ids):
    """Roles array for role ids."""
    out = []
    for rid in role_ids:
        rtype, rname = ROLE_DEFS.get(rid, ("ProjectMember", "成员"))
        out.append({"RoleType": rtype, "RoleId": rid, "RoleTypeName": rname})
    return out


def identity_user(model, k):
    """Identity user ``k`` (deterministic), created on first use."""
    rng = random.Random(f"{model.seed}/identity/{k}")
    uid = model.team["Id"] % 1000 * 10000 + 8000000 + k
    if k < len(IDENTITY_DEFS):
        name, pinyin, gkey = IDENTITY_DEFS[k]
    else:
        name, pinyin, gkey = f"Token User {k}", f"Token User {k}", f"tokenuser{k}"
    return make_user(uid, name, pinyin, gkey, rng, model.team["Id"])


def generate_model(seed, team_name, project_specs, anchor=DEFAULT_ANCHOR_MS):
    """Build a Model from a seed: team, identities and each project's data."""
    model = Model()
    model.seed = seed
    model.anchor = anchor
    trng = random.Random(f"{seed}/team/{team_name}")
    model.team = {"Id": trng.randint(100000, 999999), "Name": team_name, "Domain": team_name,
                  "NamePinYin": team_name, "Introduction": "", "Avatar": _avatar(trng)}
    for k in range(3):
        u = identity_user(model, k)
        model.users[u["Id"]] = u
        model.identities.append(u["Id"])
    for name, n in project_specs:
        p = generate_project(model, name, n)
        model.projects[name] = p
    return model


def _person_name(rng):
    """A random person name and its pinyin ("zw|zhangwei" style for Chinese names)."""
    if rng.random() < 0.7:
        s, sp = rng.choice(SURNAMES)
        g, gp = rng.choice(GIVEN)
        name, full = s + g, sp + gp
        if rng.random() < 0.4:
            g2, gp2 = rng.choice(GIVEN)
            name, full = name + g2, full + gp2
            return name, f"{sp[0]}{gp[0]}{gp2[0]}|{full}"
        return name, f"{sp[0]}{gp[0]}|{full}"
    n = rng.choice(ENGLISH_NAMES)
    return n, n


def _issue_name(rng, category):
    """A random issue title mixing English, Chinese and some emoji."""
    r = rng.random()
    if r < 0.45:
        s = f"{rng.choice(EN_VERBS)} {rng.choice(EN_OBJECTS)}"
    elif r < 0.9:
        s = f"{rng.choice(ZH_VERBS)}{rng.choice(ZH_OBJECTS)}"
    else:
        s = f"{rng.choice(ZH_VERBS)} {rng.choice(EN_OBJECTS)} {rng.choice(EMOJI)}"
    if category == "EPIC":
        s = "【史诗】" + s
    if rng.random() < 0.05:
        s += f" ({rng.choice(EMOJI)} #{rng.randint(1, 999)})"
    return s


def generate_project(model, name, n_issues):
    """Generate one project deterministically from (seed, name)."""
    rng = random.Random(f"{model.seed}/{name}")
    anchor = model.anchor
    team_id = model.team["Id"]
    p = Project(name)
    pid = rng.randint(100000, 19999999)
    created = anchor - 2 * 365 * DAY_MS - rng.randint(0, 30) * DAY_MS
    p.info = {"Name": name, "Id": pid, "Type": 2, "DisplayName": name.capitalize() + " 项目",
              "Icon": f"https://dn-coding-net-production-pp.codehub.cn/{uuid.UUID(int=rng.getrandbits(128))}.png",
              "Description": f"{name} project (simulated)", "CreatedAt": created, "MaxMember": 0,
              "TeamId": team_id, "UserOwnerId": 0, "IsDemo": False, "Archived": False,
              "StartDate": 0, "UpdatedAt": created + rng.randint(0, 300) * DAY_MS,
              "TeamOwnerId": 0, "EndDate": 0, "Status": 1}
    base = rng.randint(100000, 900000) * 10
    # Issue types: the system ones plus one custom DEFECT type.
    for k, cat in enumerate(ALL_CATEGORIES):
        tid = base + k
        tname, tdesc = TYPE_DETAILS[cat]
        p.issue_types[tid] = {"Id": tid, "Name": tname, "IssueType": cat, "Description": tdesc,
                              "IsSystem": True}
        p.category_type[cat] = tid
    custom_type_id = base + 9
    p.issue_types[custom_type_id] = {"Id": custom_type_id, "Name": "线上故障", "IssueType": "DEFECT",
                                     "Description": "生产环境发生的故障", "IsSystem": False}
    # Statuses: three per category, ids stable per category.
    sbase = rng.randint(1000000, 40000000)
    for k, cat in enumerate(ALL_CATEGORIES):
        for j, st in enumerate(STATUS_TYPES):
            sid = sbase + k * 10 + j
            p.statuses[sid] = {"Id": sid, "Name": STATUS_NAMES[st], "Type": st, "IssueType": cat}
            p.status_by_cat[(cat, st)] = sid
    lbase = rng.randint(1000000, 13000000)
    for k, (lname, color) in enumerate(LABEL_DEFS):
        p.labels[lbase + k] = {"Id": lbase + k, "Name": lname, "Color": color}
    mbase = rng.randint(10000, 90000)
    for k, mname in enumerate(MODULE_NAMES):
        p.modules[mbase + k] = {"Id": mbase + k, "Name": mname}
    for k, dname in enumerate(DEFECT_TYPE_NAMES):
        p.defect_types[mbase + 100 + k] = {
            "Id": mbase + 100 + k, "Name": dname,
            "IconUrl": f"https://e.coding.net/static/defect-type/{k + 1}.svg"}
    for k, rname in enumerate(REQUIREMENT_TYPE_NAMES):
        p.requirement_types[mbase + 200 + k] = {"Id": mbase + 200 + k, "Name": rname}
    cfbase = rng.randint(30000000, 39000000)
    for k, cname in enumerate(CUSTOM_FIELD_NAMES):
        p.custom_fields[cfbase + k] = {"Id": cfbase + k, "Name": cname}

    # Members: the three identities plus ten generated people (one emoji name,
    # one blocked, one with an empty email).
    for k, uid in enumerate(model.identities[:3]):
        roles = [(3,), (2,), (1,)][k]
        p.members[uid] = member_from_user(model.users[uid], roles)
    for k in range(10):
        while True:
            uid = rng.randint(1000000, 9999999)
            if uid not in model.users and uid not in p.members:
                break
        mname, pinyin = _person_name(rng)
        status, email = 1, None
        if k == 3:
            mname, pinyin = mname + " 😀", pinyin
        if k == 5:
            status = -1
        gkey = _global_key(rng)
        if k == 7:
            email = ""
        u = make_user(uid, mname, pinyin, gkey, rng, team_id, email=email, status=status)
        if rng.random() < 0.4:
            u["Phone"] = f"138{rng.randint(0, 99999999):08d}"
            u["PhoneValidation"] = 1
        model.users[uid] = u
        role = rng.choice([(1,), (1,), (5,), (1, 5), (4,)])
        p.members[uid] = member_from_user(u, role)
    member_ids = sorted(p.members)
    active_ids = [m for m in member_ids if p.members[m]["Status"] == 1]

    # Iterations.
    n_iter = max(3, n_issues // 100)
    p.iteration_id_base = rng.randint(100000, 900000) * 10
    span = anchor - created
    step = max(DAY_MS, span // (n_iter + 1))
    n_processing = 1 if n_iter < 5 else 2
    for code in range(1, n_iter + 1):
        if code <= n_iter - n_processing - 1:
            st = "COMPLETED"
        elif code <= n_iter - 1:
            st = "PROCESSING"
        else:
            st = "WAIT_PROCESS"
        if n_iter >= 6 and code == n_iter - n_processing - 2:
            st = "WAIT_PROCESS"   # an old iteration never started
        start_day = ms_to_cst_date(created + (code - 1) * step)
        start_at = day_start_ms(start_day)
        end_at = day_start_ms(start_day + datetime.timedelta(days=13)) + DAY_MS - 1000
        if st == "WAIT_PROCESS" and (code == n_iter or rng.random() < 0.7):
            start_at = end_at = UNSET_ITER_DATE   # the next sprint is not planned yet
        elif rng.random() < 0.08:
            end_at = UNSET_ITER_DATE
        c_at = max(created, created + (code - 1) * step - rng.randint(1, 5) * DAY_MS) + rng.randint(0, 86399) * 1000
        u_at = min(anchor, c_at + rng.randint(0, 20) * DAY_MS + rng.randint(0, 86399) * 1000)
        creator = rng.choice(active_ids)
        nm = rng.choice(["Sprint {}", "迭代 {}", "v{}.0 发布 🚀", "Sprint {} – \"hardening\""]).format(code)
        p.iterations[code] = {
            "CreatedAt": c_at, "UpdatedAt": u_at, "Name": nm, "Code": code,
            "Goal": rng.choice(["", "", "完成核心功能", "Ship it 🚀", "修复遗留缺陷"]),
            "StartAt": start_at, "EndAt": end_at,
            "Assignee": rng.choice([0] + active_ids), "Creator": creator, "Deleter": 0,
            "Starter": rng.choice(active_ids) if st != "WAIT_PROCESS" else 0,
            "Completer": rng.choice(active_ids) if st == "COMPLETED" else 0,
            "Status": st}
    p.next_iteration_code = n_iter + 1

    # Issues.
    p.issue_id_base = rng.randint(1000000, 9000000) * 10
    iter_codes = list(p.iterations)
    label_ids = list(p.labels)
    module_ids = list(p.modules)
    defect_ids = list(p.defect_types)
    req_ids = list(p.requirement_types)
    cf_ids = list(p.custom_fields)
    parents = []        # codes of REQUIREMENT/MISSION issues (sub-task parents)
    epics = []
    start = created + DAY_MS
    per = max(1, (anchor - start - DAY_MS) // max(1, n_issues))
    cats = ("DEFECT", "REQUIREMENT", "MISSION", "EPIC", "SUB_TASK")
    weights = (30, 25, 25, 4, 16)
    cum = []
    acc = 0
    for w in weights:
        acc += w
        cum.append(acc)
    rand = rng.random
    randint = rng.randint
    choice = rng.choice
    prev_updated = 0
    for code in range(1, n_issues + 1):
        i = Issue(code)
        x = rand() * acc
        cat = cats[0]
        for c, edge in zip(cats, cum):
            if x < edge:
                cat = c
                break
        if cat == "SUB_TASK" and not parents:
            cat = "MISSION"
        type_id = p.category_type[cat]
        if cat == "DEFECT" and rand() < 0.15:
            type_id = custom_type_id
        i.type_id = type_id
        if cat == "SUB_TASK":
            parent = p.issues[choice(parents[-200:])]
            i.parent_code = parent.code
            i.parent_type = p.issue_type(parent)
        else:
            i.parent_type = cat
            if cat in ("REQUIREMENT", "MISSION"):
                parents.append(code)
                if epics and rand() < 0.3:
                    i.epic_code = choice(epics[-20:])
            elif cat == "EPIC":
                epics.append(code)
        i.name = _issue_name(rng, cat)
        r = rand()
        if r < 0.06:
            i.description = choice(TRICKY_DESCRIPTIONS)
        elif r < 0.4:
            i.description = choice(PLAIN_DESCRIPTIONS)
        elif r < 0.41:
            i.description = ("长描述 long description 😀 " * 120).strip()
        st = "COMPLETED" if rand() < 0.45 else ("PROCESSING" if rand() < 0.5 else "TODO")
        i.status_id = p.status_by_cat[(cat, st)]
        r = rand()
        i.priority = "" if r < 0.1 else str(randint(0, 3))
        if rand() < 0.2:
            i.assignee_id = 0
            i.assignees = ()
        else:
            i.assignee_id = choice(member_ids)
            if rand() < 0.1:
                other = choice(member_ids)
                i.assignees = (i.assignee_id,) if other == i.assignee_id else (i.assignee_id, other)
            else:
                i.assignees = (i.assignee_id,)
        i.creator_id = choice(active_ids)
        c_at = start + (code - 1) * per + randint(0, max(0, per - 1))
        c_at -= c_at % 1000
        i.created_at = c_at
        if prev_updated and prev_updated >= c_at and rand() < 0.05:
            u_at = prev_updated          # same UpdatedAt as the previous issue: a tie
        else:
            u_at = c_at + int(rand() ** 3 * 120 * DAY_MS)
            if u_at > anchor:
                u_at = anchor - randint(0, 7 * 86400) * 1000
            if rand() < 0.7:
                u_at -= u_at % 1000
        i.updated_at = max(u_at, c_at)
        prev_updated = i.updated_at
        if st == "COMPLETED":
            i.completed_at = i.created_at + (i.updated_at - i.created_at) * 3 // 4
            i.completed_at -= i.completed_at % 1000
        if rand() < 0.35:
            sd = ms_to_cst_date(c_at) + datetime.timedelta(days=randint(0, 10))
            i.start_date = day_start_ms(sd)
            if rand() < 0.8:
                i.due_date = day_start_ms(sd + datetime.timedelta(days=randint(1, 30))) + DAY_MS - 1000
        elif rand() < 0.15:
            i.due_date = day_start_ms(ms_to_cst_date(c_at) + datetime.timedelta(days=randint(1, 60))) + DAY_MS - 1000
        r = rand()
        i.working_hours = 0 if r < 0.5 else (0.0 if r < 0.6 else (1.5 if r < 0.75 else (6 if r < 0.9 else 2.25)))
        r = rand()
        i.story_point = "" if r < 0.6 else ("0.5" if r < 0.8 else ("3" if r < 0.95 else "1"))
        if rand() < 0.6:
            # Mostly the iteration running when the issue was created.
            k = min(n_iter - 1, max(0, (c_at - created) // step + randint(-1, 1)))
            i.iteration = iter_codes[k]
        if rand() < 0.5:
            k = 1 if rand() < 0.7 else (2 if rand() < 0.7 else 3)
            i.label_ids = tuple(sorted(rng.sample(label_ids, k)))
        if rand() < 0.4:
            ws = {choice(member_ids) for _ in range(randint(1, 3))}
            i.watcher_ids = tuple(sorted(ws))
        if rand() < 0.3:
            i.module_id = choice(module_ids)
        if cat == "DEFECT" and rand() < 0.7:
            i.defect_type_id = choice(defect_ids)
        if cat == "REQUIREMENT" and rand() < 0.7:
            i.requirement_type_id = choice(req_ids)
        if rand() < 0.2:
            fid = choice(cf_ids)
            fname = p.custom_fields[fid]["Name"]
            cf = [(fid, choice(CUSTOM_VALUES[fname]))]
            if rand() < 0.3:
                fid2 = choice(cf_ids)
                if fid2 != fid:
                    cf.append((fid2, choice(CUSTOM_VALUES[p.custom_fields[fid2]["Name"]])))
            i.custom_fields = tuple(cf)
        if rand() < 0.05:
            i.files = ({"FileId": randint(1000000, 9999999), "Name": "screenshot 截图.png",
                        "Size": randint(1000, 900000), "Type": "image/png",
                        "Url": f"https://e.coding.net/files/{randint(1, 10**9)}/screenshot.png"},)
        if rand() < 0.03:
            n = randint(1, 500)
            i.third_links = ({"Id": randint(1000, 99999), "Link": f"https://github.com/acme/app/pull/{n}",
                              "ThirdType": "GITHUB", "Title": f"PR #{n}"},)
        p.issues[code] = i
    p.next_code = n_issues + 1
    p.clock = max([anchor] + [i.updated_at for i in p.issues.values()])
    return p


# --------------------------------------------------------------------------
# Rendering: internal records -> API shapes
# --------------------------------------------------------------------------

def render_list_item(model, p, i):
    """DescribeIssueListWithPage List item (exactly the §2.1 field set)."""
    it = p.iterations.get(i.iteration) if i.iteration else None
    st = p.statuses.get(i.status_id)
    td = p.issue_types.get(i.type_id, ZERO_TYPE_DETAIL)
    labels = p.labels
    cfs = p.custom_fields
    return {
        "ParentType": i.parent_type, "Code": i.code, "Type": td["IssueType"], "Name": i.name,
        "Description": i.description,
        "IterationId": p.iteration_id_base + i.iteration if it is not None else 0,
        "IssueStatusId": i.status_id,
        "IssueStatusName": st["Name"] if st else "", "IssueStatusType": st["Type"] if st else "",
        "Priority": i.priority, "AssigneeId": i.assignee_id, "Assignees": list(i.assignees),
        "StartDate": i.start_date, "DueDate": i.due_date, "WorkingHours": i.working_hours,
        "CreatorId": i.creator_id, "StoryPoint": i.story_point, "CreatedAt": i.created_at,
        "UpdatedAt": i.updated_at, "CompletedAt": i.completed_at,
        "Iteration": ({"Code": it["Code"], "Name": it["Name"], "Status": it["Status"],
                       "Id": p.iteration_id_base + it["Code"]} if it is not None else ZERO_LIST_ITERATION),
        "IssueTypeDetail": td, "IssueTypeId": i.type_id,
        "CustomFields": [{"Id": fid, "Name": cfs[fid]["Name"] if fid in cfs else "", "ValueString": v}
                         for fid, v in i.custom_fields],
        "ParentId": p.issue_id_base + i.parent_code if i.parent_code else 0,
        "ParentCode": i.parent_code,
        "Labels": [labels[lid] for lid in i.label_ids if lid in labels],
    }


def _brief(model, p, i, with_type=False):
    """The small issue object used by Epic / Parent / SubTasks."""
    st = p.statuses.get(i.status_id)
    d = {"Code": i.code, "Type": p.issue_type(i), "Name": i.name, "IssueStatusId": i.status_id,
         "IssueStatusName": st["Name"] if st else "", "Priority": i.priority,
         "Assignee": model.user_obj(p, i.assignee_id)}
    if with_type:
        d["IssueStatusType"] = st["Type"] if st else ""
        d["IssueTypeDetail"] = p.issue_types.get(i.type_id, ZERO_TYPE_DETAIL)
    return d


ZERO_EPIC = {"Code": 0, "Type": "", "Name": "", "IssueStatusId": 0, "IssueStatusName": "",
             "Priority": "", "Assignee": ZERO_USER}
ZERO_PARENT = dict(ZERO_EPIC, IssueStatusType="", IssueTypeDetail=ZERO_TYPE_DETAIL)


def render_detail(model, p, i):
    """DescribeIssue Issue object: exactly the keys of real-samples/DescribeIssue.json."""
    it = p.iterations.get(i.iteration) if i.iteration else None
    st = p.statuses.get(i.status_id)
    epic = p.issues.get(i.epic_code) if i.epic_code else None
    parent = p.issues.get(i.parent_code) if i.parent_code else None
    subs = [p.issues[c] for c in p.children().get(i.code, ()) if c in p.issues]
    cfs = p.custom_fields
    return {
        "Epic": _brief(model, p, epic) if epic else ZERO_EPIC,
        "ParentType": i.parent_type, "Code": i.code, "Type": p.issue_type(i), "Name": i.name,
        "Description": i.description,
        "IterationId": p.iteration_id_base + i.iteration if it is not None else 0,
        "IssueStatusId": i.status_id,
        "IssueStatusName": st["Name"] if st else "", "IssueStatusType": st["Type"] if st else "",
        "Priority": i.priority, "Assignee": model.user_obj(p, i.assignee_id),
        "StartDate": i.start_date, "DueDate": i.due_date, "WorkingHours": i.working_hours,
        "Creator": model.user_obj(p, i.creator_id), "StoryPoint": i.story_point,
        "CreatedAt": i.created_at, "UpdatedAt": i.updated_at, "CompletedAt": i.completed_at,
        "ProjectModule": p.modules.get(i.module_id, {"Id": 0, "Name": ""}) if i.module_id else {"Id": 0, "Name": ""},
        "Watchers": [model.user_obj(p, w) for w in i.watcher_ids],
        "Labels": [p.labels[lid] for lid in i.label_ids if lid in p.labels],
        "Files": list(i.files),
        "RequirementType": (p.requirement_types.get(i.requirement_type_id, {"Id": 0, "Name": ""})
                            if i.requirement_type_id else {"Id": 0, "Name": ""}),
        "DefectType": (p.defect_types.get(i.defect_type_id, {"Id": 0, "Name": "", "IconUrl": ""})
                       if i.defect_type_id else {"Id": 0, "Name": "", "IconUrl": ""}),
        "CustomFields": [{"Id": fid, "Name": cfs[fid]["Name"] if fid in cfs else "", "ValueString": v}
                         for fid, v in i.custom_fields],
        "ThirdLinks": list(i.third_links),
        "SubTasks": [_brief(model, p, s) for s in subs],
        "Parent": _brief(model, p, parent, with_type=True) if parent else ZERO_PARENT,
        "Iteration": ({"Code": it["Code"], "Name": it["Name"], "Status": it["Status"]}
                      if it is not None else ZERO_DETAIL_ITERATION),
        "IssueTypeDetail": p.issue_types.get(i.type_id, ZERO_TYPE_DETAIL),
        "IssueTypeId": i.type_id,
    }


def render_dump_issue(model, p, i):
    """Dump shape: DescribeIssue plus the list-only fields (enough to reload)."""
    d = render_detail(model, p, i)
    d["AssigneeId"] = i.assignee_id
    d["Assignees"] = list(i.assignees)
    d["CreatorId"] = i.creator_id
    d["ParentId"] = p.issue_id_base + i.parent_code if i.parent_code else 0
    d["ParentCode"] = i.parent_code
    return d


def render_iteration(p, it, counts=None):
    """DescribeIterationList item (key order of the API notes, counts computed)."""
    if counts is None:
        counts = p.iteration_counts()
    c = counts.get(it["Code"], (0, 0, 0))
    total = c[0] + c[1] + c[2]
    pct = round(c[2] * 100.0 / total, 2) if total else 0.0
    return {"CreatedAt": it["CreatedAt"], "UpdatedAt": it["UpdatedAt"], "Name": it["Name"],
            "Code": it["Code"], "Goal": it["Goal"], "StartAt": it["StartAt"], "EndAt": it["EndAt"],
            "Assignee": it["Assignee"], "Creator": it["Creator"], "Deleter": it["Deleter"],
            "Starter": it["Starter"], "Completer": it["Completer"], "Status": it["Status"],
            "WaitProcessCount": c[0], "ProcessingCount": c[1], "CompletedCount": c[2],
            "CompletedPercent": float(pct)}


def render_member(m):
    """DescribeProjectMembers item (copy, key order of the real sample)."""
    keys = ("Id", "TeamId", "Name", "NamePinYin", "Avatar", "Email", "Phone", "EmailValidation",
            "PhoneValidation", "GlobalKey", "Status", "Roles")
    return {k: m[k] for k in keys}


def render_user(u):
    """DescribeCodingCurrentUser User (key order of the real sample)."""
    keys = ("Id", "Status", "Email", "GlobalKey", "Avatar", "Gravatar", "Name", "NamePinYin",
            "Phone", "PhoneValidation", "EmailValidation", "PhoneRegionCode", "Region", "TeamId")
    return {k: u.get(k, "") for k in keys}


# --------------------------------------------------------------------------
# DescribeIssueListWithPage: conditions and sorting
# --------------------------------------------------------------------------

_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?: (\d{2}):(\d{2}):(\d{2}))?$")


def cond_invalid(key, value, why=None):
    """InvalidParameterValue naming the condition key."""
    msg = f"The value of condition `{key}` is invalid: {json.dumps(value, ensure_ascii=False)}"
    if why:
        msg += f" ({why})"
    return ApiError("InvalidParameterValue", msg + ".")


def parse_date_bound(text, key, raw, upper):
    """One side of a date range in China time: ms of its first (or last) millisecond.

    ``YYYY-MM-DD`` is the whole day, ``YYYY-MM-DD HH:MM:SS`` that second
    (inclusive of its 999 ms).  Returns None for an empty (open) side.
    """
    text = text.strip()
    if not text:
        return None
    m = _DATE_RE.match(text)
    if not m:
        raise cond_invalid(key, raw)
    try:
        d = datetime.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise cond_invalid(key, raw) from None
    base = day_start_ms(d)
    if m.group(4) is None:
        return base + DAY_MS - 1 if upper else base
    h, mi, s = int(m.group(4)), int(m.group(5)), int(m.group(6))
    if h > 23 or mi > 59 or s > 59:
        raise cond_invalid(key, raw)
    t = base + (h * 3600 + mi * 60 + s) * 1000
    return t + 999 if upper else t


def parse_range(value, key, parse_side):
    """Split ``A_B`` (or a single ``A``) into (lo, hi); None = open side."""
    parts = value.split("_")
    if len(parts) == 1:
        return parse_side(parts[0], False), parse_side(parts[0], True)
    if len(parts) != 2:
        raise cond_invalid(key, value)
    return parse_side(parts[0], False), parse_side(parts[1], True)


def _csv(value):
    """Non-empty trimmed elements of a comma-separated value."""
    return [x.strip() for x in value.split(",") if x.strip()]


def _csv_ints(value, key):
    """A csv of integers, or InvalidParameterValue naming ``key``."""
    out = set()
    for x in _csv(value):
        if not _INT_RE.match(x):
            raise cond_invalid(key, value)
        out.add(int(x))
    if not out:
        raise cond_invalid(key, value)
    return out


DATE_ATTRS = {"CREATED_AT": "created_at", "UPDATED_AT": "updated_at", "DUE_DATE": "due_date",
              "START_DATE": "start_date"}
UNSET_TESTS = {
    "ASSIGNEE": lambda i: i.assignee_id == 0 and not i.assignees,
    "ITERATION": lambda i: i.iteration == 0,
    "PRIORITY": lambda i: i.priority == "",
    "DUE_DATE": lambda i: i.due_date == 0,
    "START_DATE": lambda i: i.start_date == 0,
    "PARENT": lambda i: i.parent_code == 0,
    "MODULE": lambda i: i.module_id == 0,
}


def build_predicate(p, cond):
    """Turn one {Key, Value, ConstValue, CustomFieldId, CustomFieldName} into a test.

    Validates the condition (InvalidParameterValue naming the key) and returns
    a function Issue -> bool.
    """
    if not isinstance(cond, dict):
        raise invalid("Conditions", cond)
    key = cond.get("Key")
    if not isinstance(key, str) or key not in CONDITION_KEYS:
        raise ApiError("InvalidParameterValue",
                       f"The value of parameter `Conditions.Key` is invalid: "
                       f"{json.dumps(key, ensure_ascii=False)}.")
    raw = cond.get("Value")
    const = cond.get("ConstValue")
    if const not in (None, ""):
        if const != "UNSPECIFIC" or key not in UNSPECIFIC_KEYS:
            raise cond_invalid(key, const, "ConstValue")
    else:
        const = None
    if raw is None:
        value = ""
    elif isinstance(raw, str):
        value = raw
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = str(raw)
    else:
        raise cond_invalid(key, raw)
    unset = UNSET_TESTS.get(key) if const else None
    if not value.strip() and key not in ("KEYWORD",):
        if unset is not None:
            return unset
        raise cond_invalid(key, raw)
    test = _value_test(p, key, value, raw, cond)
    if unset is not None:
        return lambda i: unset(i) or test(i)
    return test


def _value_test(p, key, value, raw, cond):
    """The test for a condition's Value (see build_predicate)."""
    if key == "STATUS":
        vals = set(_csv(value))
        ids = {sid for sid, s in p.statuses.items() if str(sid) in vals or s["Name"] in vals}
        return lambda i: i.status_id in ids
    if key == "STATUS_TYPE":
        vals = set(_csv(value))
        if not vals or not vals <= set(STATUS_TYPES):
            raise cond_invalid(key, raw)
        ids = {sid for sid, s in p.statuses.items() if s["Type"] in vals}
        return lambda i: i.status_id in ids
    if key == "PRIORITY":
        vals = set(_csv(value))
        if not vals or not vals <= {"0", "1", "2", "3"}:
            raise cond_invalid(key, raw)
        return lambda i: i.priority in vals
    if key == "ASSIGNEE":
        ids = _csv_ints(value, key)
        return lambda i: i.assignee_id in ids or any(a in ids for a in i.assignees)
    if key == "CREATOR":
        ids = _csv_ints(value, key)
        return lambda i: i.creator_id in ids
    if key == "WATCHER":
        ids = _csv_ints(value, key)
        return lambda i: any(w in ids for w in i.watcher_ids)
    if key == "LABEL":
        vals = set(_csv(value))
        ids = {lid for lid, lab in p.labels.items() if str(lid) in vals or lab["Name"] in vals}
        return lambda i: any(lid in ids for lid in i.label_ids)
    if key == "ITERATION":
        ids = _csv_ints(value, key)
        return lambda i: i.iteration in ids
    if key == "PARENT":
        ids = _csv_ints(value, key)
        return lambda i: i.parent_code in ids
    if key == "MODULE":
        ids = _csv_ints(value, key)
        return lambda i: i.module_id in ids
    if key == "DEFECT_TYPE":
        ids = _csv_ints(value, key)
        return lambda i: i.defect_type_id in ids
    if key == "REQUIREMENT_TYPE":
        ids = _csv_ints(value, key)
        return lambda i: i.requirement_type_id in ids
    if key in ("ISSUE_TYPE", "MISSION_TYPE", "ISSUE_SUB_TYPE"):
        ids = _csv_ints(value, key)
        return lambda i: i.type_id in ids
    if key == "KEYWORD":
        kw = value.strip()
        kwl = kw.casefold()
        return lambda i: kwl in i.name.casefold() or kw == str(i.code)
    if key in DATE_ATTRS:
        attr = DATE_ATTRS[key]
        lo, hi = parse_range(value, key, lambda s, up: parse_date_bound(s, key, raw, up))
        lo = -(1 << 62) if lo is None else lo
        hi = (1 << 62) if hi is None else hi

        def date_test(i, attr=attr, lo=lo, hi=hi):
            """Set and inside [lo, hi]."""
            v = getattr(i, attr)
            return v != 0 and lo <= v <= hi
        return date_test
    if key == "WORKING_HOURS":
        def num(s, _up):
            """One numeric side of the range (None = open)."""
            s = s.strip()
            if not s:
                return None
            try:
                x = float(s)
            except ValueError:
                raise cond_invalid(key, raw) from None
            if math.isnan(x):
                raise cond_invalid(key, raw)
            return x
        lo, hi = parse_range(value, key, num)
        lo = -math.inf if lo is None else lo
        hi = math.inf if hi is None else hi
        return lambda i: lo <= i.working_hours <= hi
    if key == "CUSTOM":
        fid = cond.get("CustomFieldId")
        fname = cond.get("CustomFieldName")
        ids = set()
        if fid not in (None, "", 0):
            if isinstance(fid, bool) or not (isinstance(fid, int) or (isinstance(fid, str) and _INT_RE.match(fid))):
                raise cond_invalid(key, fid, "CustomFieldId")
            ids.add(int(fid))
        elif isinstance(fname, str) and fname:
            ids = {cid for cid, c in p.custom_fields.items() if c["Name"] == fname}
        else:
            raise cond_invalid(key, raw, "CustomFieldId or CustomFieldName required")
        vals = {value} | set(_csv(value))
        return lambda i: any(f in ids and v in vals for f, v in i.custom_fields)
    raise cond_invalid(key, raw)   # pragma: no cover (all keys handled above)


def sort_key_func(p, key):
    """Key function for SortKey ``key``; ties broken by Code (same direction)."""
    if key == "CREATED_AT":
        return lambda i: (i.created_at, i.code)
    if key == "UPDATED_AT":
        return lambda i: (i.updated_at, i.code)
    if key == "COMPLETED_AT":
        return lambda i: (i.completed_at, i.code)
    if key == "DUE_DATE":
        return lambda i: (i.due_date, i.code)
    if key == "PRIORITY":
        return lambda i: (int(i.priority) if i.priority else -1, i.code)
    if key in ("STATUS", "ISSUE_STATUS_ID"):
        return lambda i: (i.status_id, i.code)
    if key == "STATUS_TYPE":
        st = p.statuses
        return lambda i: (st[i.status_id]["Type"] if i.status_id in st else "", i.code)
    if key == "ASSIGNEE":
        return lambda i: (i.assignee_id, i.code)
    if key == "PARENT_ID":
        # ParentId = issue_id_base + ParentCode (or 0): same order as ParentCode.
        return lambda i: (i.parent_code, i.code)
    return lambda i: i.code


def query_issues(p, issue_type, sort_key, desc, show_sub, conditions):
    """Filtered and sorted issues of ``p`` (cached per project version)."""
    ckey = (issue_type, sort_key, desc, show_sub,
            json.dumps(conditions, sort_keys=True, ensure_ascii=False))
    hit = p._query_cache.get(ckey)
    if hit is not None:
        p._query_cache.move_to_end(ckey)
        return hit
    preds = [build_predicate(p, c) for c in conditions]
    types = p.issue_types
    out = []
    append = out.append
    for i in p.issues.values():
        t = types[i.type_id]["IssueType"] if i.type_id in types else ""
        if issue_type != "ALL" and t != issue_type:
            continue
        if not show_sub and t == "SUB_TASK":
            continue
        ok = True
        for pred in preds:
            if not pred(i):
                ok = False
                break
        if ok:
            append(i)
    out.sort(key=sort_key_func(p, sort_key), reverse=desc)
    p._query_cache[ckey] = out
    while len(p._query_cache) > 16:
        p._query_cache.popitem(last=False)
    return out


# --------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------

class Identity:
    """Who a token authenticates as: user id, scheme, scopes (None = all)."""

    __slots__ = ("uid", "scheme", "scopes")

    def __init__(self, uid, scheme, scopes):
        """Plain record."""
        self.uid = uid
        self.scheme = scheme
        self.scopes = scopes


def require_project(model, params):
    """The project named by ProjectName (MissingParameter / ResourceNotFound)."""
    name = params.get("ProjectName")
    if name is None or name == "":
        raise missing("ProjectName")
    if not isinstance(name, str):
        raise invalid("ProjectName", name)
    p = model.project(name)
    if p is None:
        raise ApiError("ResourceNotFound", "project not found")
    return p


def act_current_user(state, params, ident):
    """DescribeCodingCurrentUser: the token's user."""
    u = state.model.users.get(ident.uid)
    if u is None:
        raise ApiError("AuthFailure", AUTH_MESSAGE)
    return {"User": render_user(u)}


def act_project_by_name(state, params, ident):
    """DescribeProjectByName: Project object of the real sample."""
    p = require_project(state.model, params)
    return {"Project": dict(p.info)}


def act_issue_list(state, params, ident):
    """DescribeIssueListWithPage: filtered, sorted, paged issue list."""
    model = state.model
    p = require_project(model, params)
    itype = as_str(params.get("IssueType"), "IssueType") or "ALL"
    if itype not in ("ALL",) + ISSUE_TYPES:
        raise invalid("IssueType", params.get("IssueType"))
    page = as_int(params.get("PageNumber"), "PageNumber", 1)
    if page < 0:
        raise invalid("PageNumber", params.get("PageNumber"))
    page = page or 1
    size = as_int(params.get("PageSize"), "PageSize", 20)
    if size < 1:
        raise invalid("PageSize", params.get("PageSize"))
    size = min(size, MAX_PAGE_SIZE)
    sort_key = as_str(params.get("SortKey"), "SortKey") or "CODE"
    if sort_key not in SORT_KEYS:
        raise invalid("SortKey", params.get("SortKey"))
    sort_value = (as_str(params.get("SortValue"), "SortValue") or "DESC").upper()
    if sort_value not in ("ASC", "DESC"):
        raise invalid("SortValue", params.get("SortValue"))
    show_sub = as_bool(params.get("ShowSubIssues"), "ShowSubIssues", False)
    if as_bool(params.get("ExcludeSubTask"), "ExcludeSubTask", False):
        show_sub = False
    conds = params.get("Conditions")
    if conds is None:
        conds = []
    elif isinstance(conds, dict):
        conds = [conds]
    elif not isinstance(conds, list):
        raise invalid("Conditions", conds)
    result = query_issues(p, itype, sort_key, sort_value == "DESC", show_sub, conds)
    total = len(result)
    start = (page - 1) * size
    items = [render_list_item(model, p, i) for i in result[start:start + size]]
    return {"Data": {"PageNumber": page, "PageSize": size,
                     "TotalPage": (total + size - 1) // size, "TotalCount": total,
                     "List": items}}


def act_issue(state, params, ident):
    """DescribeIssue: one issue in the detail shape."""
    model = state.model
    p = require_project(model, params)
    code = as_int(params.get("IssueCode"), "IssueCode", required=True)
    i = p.issues.get(code)
    if i is None:
        raise ApiError("ResourceNotFound", "issue not found")
    return {"Issue": render_detail(model, p, i)}


def _day_param(value, name):
    """A ``YYYY-MM-DD`` request field (DescribeIterationList StartDate/EndDate)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not re.match(r"^\d{4}-\d{2}-\d{2}$", value):
        raise invalid(name, value)
    try:
        return datetime.date(int(value[:4]), int(value[5:7]), int(value[8:10]))
    except ValueError:
        raise invalid(name, value) from None


def _list_param(value):
    """An array field; a lone scalar is read as a one-element array."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def act_iteration_list(state, params, ident):
    """DescribeIterationList: Offset is a 0-based page index (documented choice)."""
    p = require_project(state.model, params)
    offset = as_int(params.get("Offset"), "Offset", 0)
    if offset < 0:
        raise invalid("Offset", params.get("Offset"))
    limit = as_int(params.get("Limit"), "Limit", 20)
    if limit < 1:
        raise invalid("Limit", params.get("Limit"))
    limit = min(limit, MAX_PAGE_SIZE)
    start_day = _day_param(params.get("StartDate"), "StartDate")
    end_day = _day_param(params.get("EndDate"), "EndDate")
    kw = as_str(params.get("Keywords"), "Keywords") or ""
    statuses = _list_param(params.get("Status"))
    for s in statuses:
        if s not in ITERATION_STATUSES:
            raise invalid("Status", params.get("Status"))
    assignees = set()
    for a in _list_param(params.get("Assignee")):
        try:
            assignees.add(as_int(a, "Assignee"))
        except ApiError:
            raise invalid("Assignee", params.get("Assignee")) from None
    lo = day_start_ms(start_day) if start_day else None
    hi = day_start_ms(end_day) + DAY_MS - 1 if end_day else None
    kwl = kw.casefold()
    rows = []
    for code in sorted(p.iterations, reverse=True):
        it = p.iterations[code]
        if statuses and it["Status"] not in statuses:
            continue
        if assignees and it["Assignee"] not in assignees:
            continue
        if kwl and kwl not in it["Name"].casefold():
            continue
        if lo is not None and (it["StartAt"] == UNSET_ITER_DATE or it["StartAt"] < lo):
            continue
        if hi is not None and (it["EndAt"] == UNSET_ITER_DATE or it["EndAt"] > hi):
            continue
        rows.append(it)
    total = len(rows)
    counts = p.iteration_counts()
    page_rows = rows[offset * limit:(offset + 1) * limit]
    return {"Data": {"Page": offset + 1, "PageSize": limit,
                     "TotalPage": (total + limit - 1) // limit, "TotalRow": total,
                     "List": [render_iteration(p, it, counts) for it in page_rows]}}


def act_project_members(state, params, ident):
    """DescribeProjectMembers: members of ProjectId, by Id ascending."""
    model = state.model
    pid = params.get("ProjectId")
    if pid is None or pid == "":
        raise missing("ProjectId")
    pid = as_int(pid, "ProjectId")
    p = model.project_by_id(pid)
    if p is None:
        raise ApiError("ResourceNotFound", "project not found")
    page = as_int(params.get("PageNumber"), "PageNumber", 1)
    if page < 0:
        raise invalid("PageNumber", params.get("PageNumber"))
    page = page or 1
    size = as_int(params.get("PageSize"), "PageSize", 20)
    if size < 1:
        raise invalid("PageSize", params.get("PageSize"))
    size = min(size, MAX_PAGE_SIZE)
    role = params.get("RoleId")
    role = None if role in (None, "", 0) else as_int(role, "RoleId")
    rows = [p.members[k] for k in sorted(p.members)]
    if role is not None:
        rows = [m for m in rows if any(r.get("RoleId") == role for r in m["Roles"])]
    start = (page - 1) * size
    return {"Data": {"PageNumber": page, "PageSize": size, "TotalCount": len(rows),
                     "ProjectMembers": [render_member(m) for m in rows[start:start + size]]}}


HANDLERS = {
    "DescribeCodingCurrentUser": act_current_user,
    "DescribeProjectByName": act_project_by_name,
    "DescribeIssueListWithPage": act_issue_list,
    "DescribeIssue": act_issue,
    "DescribeIterationList": act_iteration_list,
    "DescribeProjectMembers": act_project_members,
}


# --------------------------------------------------------------------------
# Mutations (control endpoints) and model load/dump
# --------------------------------------------------------------------------

ISSUE_FIELDS = {
    "Code", "Type", "IssueTypeId", "IssueTypeDetail", "ParentType", "Name", "Description",
    "IterationId", "IterationCode", "Iteration", "IssueStatusId", "IssueStatusName",
    "IssueStatusType", "Priority", "AssigneeId", "Assignee", "Assignees", "StartDate", "DueDate",
    "WorkingHours", "CreatorId", "Creator", "StoryPoint", "CreatedAt", "UpdatedAt", "CompletedAt",
    "CustomFields", "ParentId", "ParentCode", "Parent", "Epic", "EpicCode", "Labels", "Watchers",
    "WatcherIds", "ProjectModule", "ModuleId", "RequirementType", "RequirementTypeId",
    "DefectType", "DefectTypeId", "Files", "ThirdLinks", "SubTasks", "ProjectName", "TeamName",
}
ITERATION_FIELDS = {"Code", "Name", "Goal", "StartAt", "EndAt", "Assignee", "Creator", "Deleter",
                    "Starter", "Completer", "Status", "CreatedAt", "UpdatedAt", "Id",
                    "WaitProcessCount", "ProcessingCount", "CompletedCount", "CompletedPercent"}
MEMBER_FIELDS = {"Id", "TeamId", "Name", "NamePinYin", "Avatar", "Email", "Phone",
                 "EmailValidation", "PhoneValidation", "GlobalKey", "Status", "Roles"}


def _cint(f, key, allow_none=False):
    """Integer control field (ControlError 400 otherwise)."""
    v = f.get(key)
    if v is None and allow_none:
        return None
    try:
        return as_int(v, key, required=True)
    except ApiError:
        raise ControlError(400, f"field {key}: expected an integer, got {json.dumps(v, ensure_ascii=False)}") from None


def _cstr(f, key):
    """String control field."""
    v = f.get(key)
    if not isinstance(v, str):
        raise ControlError(400, f"field {key}: expected a string")
    return v


def _obj_id(v, key, attr="Id"):
    """Id of ``{"Id": n}`` or a bare integer."""
    if isinstance(v, dict):
        v = v.get(attr, 0)
    try:
        return as_int(v, key, required=True)
    except ApiError:
        raise ControlError(400, f"field {key}: expected an integer or an object with {attr}") from None


def _check_fields(f, allowed, what):
    """Reject unknown keys (typos in test fixtures should fail loudly)."""
    if not isinstance(f, dict):
        raise ControlError(400, f"{what} body must be a JSON object")
    bad = sorted(set(f) - allowed)
    if bad:
        raise ControlError(400, f"unknown {what} field(s): {', '.join(bad)}")


def apply_issue_fields(model, p, i, f, loading=False):
    """Merge PascalCase fields (list or detail shape) into issue ``i``.

    Used by POST/PATCH /_sim/.../issues and by --data loading; derived fields
    (IssueStatusName, SubTasks, ...) are accepted and ignored or used as
    selectors.  Returns True when the status changed.
    """
    _check_fields(f, ISSUE_FIELDS, "issue")
    old_status = i.status_id
    if "IssueTypeId" in f:
        tid = _cint(f, "IssueTypeId")
        if tid not in p.issue_types:
            raise ControlError(400, f"unknown IssueTypeId {tid}")
        i.type_id = tid
    elif "Type" in f:
        t = f["Type"]
        if t not in p.category_type:
            raise ControlError(400, f"unknown Type {json.dumps(t, ensure_ascii=False)}")
        if p.issue_type(i) != t:
            i.type_id = p.category_type[t]
    elif isinstance(f.get("IssueTypeDetail"), dict) and f["IssueTypeDetail"].get("Id") in p.issue_types:
        i.type_id = f["IssueTypeDetail"]["Id"]
    cat = p.issue_type(i)
    if "Type" in f and f["Type"] != cat:
        raise ControlError(400, f"Type {f['Type']} does not match IssueTypeId {i.type_id} ({cat})")
    # Parent (sub-tasks) and epic.
    pc = None
    if "ParentCode" in f:
        pc = _cint(f, "ParentCode")
    elif "Parent" in f:
        pc = _obj_id(f["Parent"], "Parent", "Code")
    elif "ParentId" in f:
        pid = _cint(f, "ParentId")
        pc = pid - p.issue_id_base if pid else 0
    if pc is not None:
        if pc and not loading and pc not in p.issues:
            raise ControlError(400, f"parent issue {pc} not found")
        if pc and pc == i.code:
            raise ControlError(400, "an issue cannot be its own parent")
        i.parent_code = pc
    if loading and "ParentType" in f:
        i.parent_type = _cstr(f, "ParentType")
    elif cat == "SUB_TASK":
        parent = p.issues.get(i.parent_code)
        if parent is not None:
            i.parent_type = p.issue_type(parent)
        elif not i.parent_type or i.parent_type == "SUB_TASK":
            i.parent_type = "MISSION"
    else:
        i.parent_type = cat
    if "EpicCode" in f or "Epic" in f:
        ec = _cint(f, "EpicCode") if "EpicCode" in f else _obj_id(f["Epic"], "Epic", "Code")
        if ec and not loading and ec not in p.issues:
            raise ControlError(400, f"epic issue {ec} not found")
        i.epic_code = ec
    # Status (must belong to the issue's category).
    if "IssueStatusId" in f:
        sid = _cint(f, "IssueStatusId")
        s = p.statuses.get(sid)
        if s is None or s["IssueType"] != cat:
            raise ControlError(400, f"IssueStatusId {sid} is not a {cat} status")
        i.status_id = sid
    elif "IssueStatusName" in f or "IssueStatusType" in f:
        want_name, want_type = f.get("IssueStatusName"), f.get("IssueStatusType")
        found = [sid for sid, s in sorted(p.statuses.items()) if s["IssueType"] == cat
                 and (want_name is None or s["Name"] == want_name)
                 and (want_type is None or s["Type"] == want_type)]
        if not found:
            raise ControlError(400, f"no {cat} status matches {want_name or ''} {want_type or ''}".strip())
        i.status_id = found[0]
    s = p.statuses.get(i.status_id)
    if s is None or s["IssueType"] != cat:
        stype = s["Type"] if s else "TODO"
        i.status_id = p.status_by_cat[(cat, stype)]
    if "Priority" in f:
        pr = f["Priority"]
        if isinstance(pr, int) and not isinstance(pr, bool):
            pr = str(pr)
        if pr not in ("", "0", "1", "2", "3"):
            raise ControlError(400, "field Priority: expected \"\" or \"0\"..\"3\"")
        i.priority = pr
    # Assignee(s).
    aid = None
    if "AssigneeId" in f:
        aid = _cint(f, "AssigneeId")
    elif "Assignee" in f:
        aid = _obj_id(f["Assignee"], "Assignee")
    if "Assignees" in f:
        a = f["Assignees"]
        if not isinstance(a, list):
            raise ControlError(400, "field Assignees: expected an array")
        i.assignees = tuple(_obj_id(x, "Assignees") for x in a)
        if aid is None:
            aid = i.assignees[0] if i.assignees else 0
    elif aid is not None:
        i.assignees = (aid,) if aid else ()
    if aid is not None:
        i.assignee_id = aid
    if "CreatorId" in f:
        i.creator_id = _cint(f, "CreatorId")
    elif "Creator" in f:
        i.creator_id = _obj_id(f["Creator"], "Creator")
    for key, attr in (("StartDate", "start_date"), ("DueDate", "due_date"),
                      ("CreatedAt", "created_at"), ("UpdatedAt", "updated_at"),
                      ("CompletedAt", "completed_at")):
        if key in f:
            setattr(i, attr, _cint(f, key))
    if "WorkingHours" in f:
        wh = f["WorkingHours"]
        if isinstance(wh, bool) or not isinstance(wh, (int, float)):
            raise ControlError(400, "field WorkingHours: expected a number")
        i.working_hours = wh
    for key, attr in (("Name", "name"), ("Description", "description"), ("StoryPoint", "story_point")):
        if key in f:
            setattr(i, attr, _cstr(f, key))
    # Iteration: IterationCode > Iteration.Code > IterationId.
    ic = None
    if "IterationCode" in f:
        ic = _cint(f, "IterationCode")
    elif "Iteration" in f:
        ic = _obj_id(f["Iteration"], "Iteration", "Code")
    elif "IterationId" in f:
        iid = _cint(f, "IterationId")
        ic = iid - p.iteration_id_base if iid else 0
    if ic is not None:
        if ic and ic not in p.iterations:
            raise ControlError(400, f"iteration {ic} not found")
        i.iteration = ic
    if "Labels" in f:
        if not isinstance(f["Labels"], list):
            raise ControlError(400, "field Labels: expected an array")
        ids = []
        by_name = {lab["Name"]: lid for lid, lab in p.labels.items()}
        for x in f["Labels"]:
            lid = by_name.get(x) if isinstance(x, str) and not _INT_RE.match(x) else _obj_id(x, "Labels")
            if lid not in p.labels:
                raise ControlError(400, f"unknown label {json.dumps(x, ensure_ascii=False)}")
            ids.append(lid)
        i.label_ids = tuple(ids)
    wkey = "WatcherIds" if "WatcherIds" in f else ("Watchers" if "Watchers" in f else None)
    if wkey:
        if not isinstance(f[wkey], list):
            raise ControlError(400, f"field {wkey}: expected an array")
        i.watcher_ids = tuple(_obj_id(x, wkey) for x in f[wkey])
    for keys, attr, table in ((("ModuleId", "ProjectModule"), "module_id", p.modules),
                              (("RequirementTypeId", "RequirementType"), "requirement_type_id", p.requirement_types),
                              (("DefectTypeId", "DefectType"), "defect_type_id", p.defect_types)):
        for k in keys:
            if k in f:
                v = _obj_id(f[k], k)
                if v and v not in table:
                    raise ControlError(400, f"field {k}: unknown id {v}")
                setattr(i, attr, v)
                break
    if "CustomFields" in f:
        if not isinstance(f["CustomFields"], list):
            raise ControlError(400, "field CustomFields: expected an array")
        out = []
        for cf in f["CustomFields"]:
            if not isinstance(cf, dict) or not isinstance(cf.get("ValueString", ""), str):
                raise ControlError(400, "field CustomFields: expected [{Id|Name, ValueString}]")
            fid = cf.get("Id")
            if fid is None:
                fid = next((k for k, c in p.custom_fields.items() if c["Name"] == cf.get("Name")), None)
            if fid not in p.custom_fields:
                raise ControlError(400, f"unknown custom field {json.dumps(cf, ensure_ascii=False)}")
            out.append((fid, cf.get("ValueString", "")))
        i.custom_fields = tuple(out)
    for key, attr in (("Files", "files"), ("ThirdLinks", "third_links")):
        if key in f:
            if not isinstance(f[key], list) or not all(isinstance(x, dict) for x in f[key]):
                raise ControlError(400, f"field {key}: expected an array of objects")
            setattr(i, attr, tuple(f[key]))
    return i.status_id != old_status


def _finish_issue_mutation(p, i, f, status_changed):
    """Stamp UpdatedAt (and CompletedAt on a status change) after a mutation."""
    if "UpdatedAt" not in f:
        i.updated_at = p.tick(i.updated_at)
    else:
        p.clock = max(p.clock, i.updated_at)
    if status_changed and "CompletedAt" not in f:
        s = p.statuses.get(i.status_id)
        i.completed_at = i.updated_at if s and s["Type"] == "COMPLETED" else 0


def create_issue(model, p, f):
    """POST /_sim/.../issues: a new issue; Code = next free code unless given."""
    _check_fields(f, ISSUE_FIELDS, "issue")
    if "Code" in f:
        code = _cint(f, "Code")
        if code < 1 or code in p.issues:
            raise ControlError(409, f"issue code {code} is invalid or taken")
    else:
        code = p.next_code
    i = Issue(code)
    i.type_id = p.category_type["MISSION"]
    i.name = f"Issue {code}"
    i.creator_id = model.identities[0] if model.identities else 0
    apply_issue_fields(model, p, i, f)
    if "CreatedAt" not in f:
        i.created_at = p.tick()
        if "UpdatedAt" not in f:
            i.updated_at = i.created_at
    elif "UpdatedAt" not in f:
        i.updated_at = p.tick(i.created_at)
    p.clock = max(p.clock, i.updated_at)
    s = p.statuses[i.status_id]
    if s["Type"] == "COMPLETED" and "CompletedAt" not in f:
        i.completed_at = i.updated_at
    p.issues[code] = i
    p.next_code = max(p.next_code, code + 1)
    return i


def patch_issue(model, p, code, f):
    """PATCH /_sim/.../issues/{code}: merge fields, stamp UpdatedAt."""
    i = p.issues.get(code)
    if i is None:
        raise ControlError(404, f"issue {code} not found")
    if "Code" in f and f["Code"] != code:
        raise ControlError(400, "Code cannot be changed")
    changed = apply_issue_fields(model, p, i, f)
    _finish_issue_mutation(p, i, f, changed)
    return i


def apply_iteration_fields(p, it, f):
    """Merge PascalCase iteration fields into iteration dict ``it``."""
    _check_fields(f, ITERATION_FIELDS, "iteration")
    for key in ("Name", "Goal"):
        if key in f:
            it[key] = _cstr(f, key)
    for key in ("StartAt", "EndAt", "Assignee", "Creator", "Deleter", "Starter", "Completer",
                "CreatedAt", "UpdatedAt"):
        if key in f:
            it[key] = _cint(f, key)
    if "Status" in f:
        if f["Status"] not in ITERATION_STATUSES:
            raise ControlError(400, f"field Status: one of {', '.join(ITERATION_STATUSES)}")
        it["Status"] = f["Status"]


def create_iteration(model, p, f):
    """POST /_sim/.../iterations: a new iteration (Code = next unless given)."""
    _check_fields(f, ITERATION_FIELDS, "iteration")
    code = _cint(f, "Code") if "Code" in f else p.next_iteration_code
    if code < 1 or code in p.iterations:
        raise ControlError(409, f"iteration code {code} is invalid or taken")
    creator = model.identities[0] if model.identities else 0
    it = {"CreatedAt": 0, "UpdatedAt": 0, "Name": f"Sprint {code}", "Code": code, "Goal": "",
          "StartAt": UNSET_ITER_DATE, "EndAt": UNSET_ITER_DATE, "Assignee": 0, "Creator": creator,
          "Deleter": 0, "Starter": 0, "Completer": 0, "Status": "WAIT_PROCESS"}
    apply_iteration_fields(p, it, f)
    t = p.tick()
    if "CreatedAt" not in f:
        it["CreatedAt"] = t
    if "UpdatedAt" not in f:
        it["UpdatedAt"] = max(t, it["CreatedAt"])
    p.clock = max(p.clock, it["UpdatedAt"])
    p.iterations[code] = it
    p.next_iteration_code = max(p.next_iteration_code, code + 1)
    return it


def patch_iteration(model, p, code, f):
    """PATCH /_sim/.../iterations/{code}."""
    old = p.iterations.get(code)
    if old is None:
        raise ControlError(404, f"iteration {code} not found")
    if "Code" in f and f["Code"] != code:
        raise ControlError(400, "Code cannot be changed")
    it = dict(old)              # copy-on-write: responses may still reference the old dict
    apply_iteration_fields(p, it, f)
    if "UpdatedAt" not in f:
        it["UpdatedAt"] = p.tick(old["UpdatedAt"])
    p.iterations[code] = it
    return it


def delete_iteration(model, p, code):
    """DELETE an iteration; its issues leave it (IterationId 0, UpdatedAt bumped)."""
    it = p.iterations.pop(code, None)
    if it is None:
        raise ControlError(404, f"iteration {code} not found")
    moved = []
    for i in p.issues.values():
        if i.iteration == code:
            i.iteration = 0
            i.updated_at = p.tick(i.updated_at)
            moved.append(i.code)
    return it, moved


def apply_member_fields(m, f):
    """Merge PascalCase member fields into member dict ``m``."""
    _check_fields(f, MEMBER_FIELDS, "member")
    for key in ("Name", "NamePinYin", "Avatar", "Email", "Phone", "GlobalKey"):
        if key in f:
            m[key] = _cstr(f, key)
    for key in ("TeamId", "EmailValidation", "PhoneValidation", "Status"):
        if key in f:
            m[key] = _cint(f, key)
    if "Roles" in f:
        if not isinstance(f["Roles"], list):
            raise ControlError(400, "field Roles: expected an array")
        roles = []
        for r in f["Roles"]:
            if isinstance(r, dict):
                rid = _obj_id(r, "Roles", "RoleId")
                rtype, rname = ROLE_DEFS.get(rid, ("ProjectMember", "成员"))
                roles.append({"RoleType": r.get("RoleType", rtype), "RoleId": rid,
                              "RoleTypeName": r.get("RoleTypeName", rname)})
            else:
                roles.extend(roles_list([_obj_id(r, "Roles")]))
        m["Roles"] = roles


def create_member(model, p, f):
    """POST /_sim/.../members: add a member (Id = next free unless given)."""
    _check_fields(f, MEMBER_FIELDS, "member")
    if "Id" in f:
        mid = _cint(f, "Id")
    else:
        mid = max(list(model.users) + list(p.members) + [9000000]) + 1
    if mid < 1 or mid in p.members:
        raise ControlError(409, f"member {mid} is invalid or already in the project")
    base = model.users.get(mid)
    if base is None:
        rng = random.Random(f"{model.seed}/member/{mid}")
        base = make_user(mid, f"Member {mid}", f"Member {mid}", _global_key(rng), rng, model.team["Id"])
    m = member_from_user(base, (1,))
    apply_member_fields(m, f)
    p.members[mid] = m
    if mid not in model.users:
        u = dict(base)
        for k in ("Name", "NamePinYin", "Avatar", "Email", "Phone", "GlobalKey", "Status",
                  "EmailValidation", "PhoneValidation"):
            u[k] = m[k]
        model.users[mid] = u
    return m


def patch_member(model, p, mid, f):
    """PATCH /_sim/.../members/{id} (copy-on-write)."""
    old = p.members.get(mid)
    if old is None:
        raise ControlError(404, f"member {mid} not found")
    if "Id" in f and f["Id"] != mid:
        raise ControlError(400, "Id cannot be changed")
    m = json.loads(json.dumps(old))
    apply_member_fields(m, f)
    p.members[mid] = m
    return m


def dump_model(model, only=None):
    """The whole model as JSON-able data (the --data format)."""
    out = {"format": "coding_sim/1", "seed": model.seed, "anchor": model.anchor,
           "team": model.team, "identities": list(model.identities),
           "users": [render_user(model.users[k]) for k in sorted(model.users)],
           "projects": collections.OrderedDict()}
    for name, p in model.projects.items():
        if only is not None and name != only:
            continue
        counts = p.iteration_counts()
        out["projects"][name] = {
            "project": p.info, "issue_id_base": p.issue_id_base,
            "iteration_id_base": p.iteration_id_base, "next_code": p.next_code,
            "next_iteration_code": p.next_iteration_code, "clock": p.clock,
            "issue_types": list(p.issue_types.values()), "statuses": list(p.statuses.values()),
            "labels": list(p.labels.values()), "modules": list(p.modules.values()),
            "defect_types": list(p.defect_types.values()),
            "requirement_types": list(p.requirement_types.values()),
            "custom_fields": list(p.custom_fields.values()),
            "members": [render_member(p.members[k]) for k in sorted(p.members)],
            "iterations": [render_iteration(p, p.iterations[k], counts) for k in sorted(p.iterations)],
            "issues": [render_dump_issue(model, p, p.issues[k]) for k in sorted(p.issues)],
        }
    return out


def load_model(data):
    """Build a Model from dump_model() output (``--data file.json``)."""
    if not isinstance(data, dict) or not isinstance(data.get("projects"), dict):
        raise ValueError("data file: expected an object with \"projects\"")
    model = Model()
    model.seed = data.get("seed", 0)
    model.anchor = data.get("anchor", DEFAULT_ANCHOR_MS)
    model.team = dict(data.get("team") or {"Id": 1, "Name": "team", "Domain": "team"})
    for u in data.get("users", []):
        model.users[u["Id"]] = dict(u)
    model.identities = list(data.get("identities", []))
    for name, pd in data["projects"].items():
        p = Project(name)
        p.info = dict(pd["project"])
        p.issue_id_base = pd.get("issue_id_base", 0)
        p.iteration_id_base = pd.get("iteration_id_base", 0)
        for d in pd.get("issue_types", []):
            p.issue_types[d["Id"]] = d
            if d.get("IsSystem") and d["IssueType"] not in p.category_type:
                p.category_type[d["IssueType"]] = d["Id"]
        for d in pd.get("statuses", []):
            p.statuses[d["Id"]] = d
            p.status_by_cat.setdefault((d["IssueType"], d["Type"]), d["Id"])
        for attr in ("labels", "modules", "defect_types", "requirement_types", "custom_fields"):
            table = getattr(p, attr)
            for d in pd.get(attr, []):
                table[d["Id"]] = d
        for m in pd.get("members", []):
            p.members[m["Id"]] = dict(m)
        for it in pd.get("iterations", []):
            d = {k: it[k] for k in ("CreatedAt", "UpdatedAt", "Name", "Code", "Goal", "StartAt",
                                    "EndAt", "Assignee", "Creator", "Deleter", "Starter",
                                    "Completer", "Status") if k in it}
            d.setdefault("Deleter", 0)
            p.iterations[d["Code"]] = d
        for f in pd.get("issues", []):
            i = Issue(f["Code"])
            i.type_id = next(iter(p.issue_types), 0)
            try:
                apply_issue_fields(model, p, i, {k: v for k, v in f.items() if k != "Code"}, loading=True)
            except ControlError as e:
                raise ValueError(f"project {name} issue {f.get('Code')}: {e.message}") from None
            p.issues[i.code] = i
        p.next_code = max([pd.get("next_code", 1)] + [c + 1 for c in p.issues])
        p.next_iteration_code = max([pd.get("next_iteration_code", 1)] + [c + 1 for c in p.iterations])
        p.clock = max([pd.get("clock", 0)] + [i.updated_at for i in p.issues.values()])
        model.projects[name] = p
    return model


# --------------------------------------------------------------------------
# Faults, rate limiting, request log, pre-rendered responses
# --------------------------------------------------------------------------

FAULT_TYPES = ("http_500", "http_502", "http_429", "rate_limited", "auth_failure", "error",
               "delay", "stall_mid_body", "truncated_json", "invalid_json", "wrong_types",
               "huge_body", "drop_connection", "raw_body", "chunked")


class FaultQueue:
    """Queued faults; each API request consults the first one matching its Action."""

    def __init__(self):
        """Empty queue."""
        self.lock = threading.Lock()
        self.items = []
        self.next_id = 1

    def add(self, spec):
        """Validate and queue a fault spec; returns the stored copy."""
        if not isinstance(spec, dict):
            raise ControlError(400, "fault must be a JSON object")
        ftype = spec.get("type")
        if ftype not in FAULT_TYPES:
            raise ControlError(400, f"unknown fault type {json.dumps(ftype)}; one of {', '.join(FAULT_TYPES)}")
        f = dict(spec)
        f.setdefault("action", "*")
        if not isinstance(f["action"], str):
            raise ControlError(400, "fault action must be a string")
        for k, default in (("count", 1), ("skip", 0)):
            v = f.get(k, default)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ControlError(400, f"fault {k} must be an integer")
            f[k] = v
        if ftype == "raw_body":
            if "body_b64" in f:
                try:
                    base64.b64decode(f["body_b64"], validate=True)
                except (TypeError, ValueError, binascii.Error):
                    raise ControlError(400, "raw_body body_b64 must be base64") from None
            elif not isinstance(f.get("body"), str):
                raise ControlError(400, "raw_body needs a \"body\" string or \"body_b64\"")
        if "status" in f and (isinstance(f["status"], bool) or not isinstance(f["status"], int)
                              or not 200 <= f["status"] <= 599):
            raise ControlError(400, "fault status must be an HTTP status (200-599)")
        for k in ("seconds", "mb", "retry_after"):
            if k in f and (isinstance(f[k], bool) or not isinstance(f[k], (int, float)) or f[k] < 0):
                raise ControlError(400, f"fault {k} must be a non-negative number")
        with self.lock:
            f["id"] = self.next_id
            self.next_id += 1
            self.items.append(f)
            return dict(f)

    def take(self, action):
        """The fault to apply to a request for ``action`` (None = no fault)."""
        with self.lock:
            for f in self.items:
                if f["action"] not in ("*", action):
                    continue
                if f["skip"] > 0:
                    f["skip"] -= 1
                    return None
                if f["count"] > 0:
                    f["count"] -= 1
                    if f["count"] == 0:
                        self.items.remove(f)
                return dict(f)
            return None

    def list(self):
        """Pending faults (copies)."""
        with self.lock:
            return [dict(f) for f in self.items]

    def clear(self):
        """Drop all pending faults."""
        with self.lock:
            self.items.clear()


class RateLimiter:
    """Per-Action sliding one-second window of accepted requests."""

    def __init__(self, per_second=0):
        """Limit in requests/second (0 = off)."""
        self.lock = threading.Lock()
        self.per_second = per_second
        self.windows = {}

    def set(self, per_second):
        """Change the limit (0 = off) and forget the windows."""
        with self.lock:
            self.per_second = per_second
            self.windows.clear()

    def allow(self, action):
        """True when ``action`` may run now (and count it)."""
        with self.lock:
            if self.per_second <= 0:
                return True
            now = time.monotonic()
            dq = self.windows.get(action)
            if dq is None:
                dq = self.windows[action] = collections.deque()
            while dq and dq[0] <= now - 1.0:
                dq.popleft()
            if len(dq) >= self.per_second:
                return False
            dq.append(now)
            return True


class RequestLog:
    """Log of API requests (never the token), bounded to MAX_LOG entries."""

    def __init__(self):
        """Empty log."""
        self.lock = threading.Lock()
        self.entries = collections.deque(maxlen=MAX_LOG)
        self.next_id = 1

    def add(self, action, body, scheme):
        """Append a new entry and return it (fields are filled in as the request runs)."""
        with self.lock:
            e = {"id": self.next_id, "ts": time.time(), "action": action, "body": body,
                 "auth_scheme": scheme, "fault": None, "error_code": None}
            self.next_id += 1
            self.entries.append(e)
            return e

    def query(self, action=None, since=None):
        """Entries (copies), optionally only for ``action`` and with id > ``since``."""
        with self.lock:
            return [dict(e) for e in self.entries
                    if (action is None or e["action"] == action) and (since is None or e["id"] > since)]

    def count(self, action=None):
        """Number of logged entries (for ``action``)."""
        with self.lock:
            if action is None:
                return len(self.entries)
            return sum(1 for e in self.entries if e["action"] == action)

    def clear(self):
        """Forget all entries (ids keep growing)."""
        with self.lock:
            self.entries.clear()


class Prerender:
    """--prerender: successful response bytes keyed by (Action, user, canonical body)."""

    LIMIT = 512 * 1024 * 1024

    def __init__(self, enabled):
        """Empty cache (inactive unless ``enabled``)."""
        self.enabled = enabled
        self.lock = threading.Lock()
        self.cache = {}
        self.size = 0
        self.version = None

    def get(self, key, version):
        """Cached bytes for ``key`` if the model did not change since."""
        with self.lock:
            if self.version != version:
                self.cache.clear()
                self.size = 0
                self.version = version
                return None
            return self.cache.get(key)

    def put(self, key, version, data):
        """Remember ``data``; the whole cache is dropped when it grows too big."""
        with self.lock:
            if self.version != version:
                self.cache.clear()
                self.size = 0
                self.version = version
            if self.size + len(data) > self.LIMIT:
                self.cache.clear()
                self.size = 0
            self.cache[key] = data
            self.size += len(data)


# --------------------------------------------------------------------------
# Webhooks (Service Hook deliveries)
# --------------------------------------------------------------------------

def hook_user(model, p, uid):
    """Webhook user object (snake_case, as in the real captures)."""
    u = model.person(p, uid)
    if u is None:
        return None
    dom = model.team.get("Domain", "team")
    gk = u.get("GlobalKey", "")
    return {"id": uid, "login": gk, "avatar_url": u.get("Avatar", ""),
            "url": f"https://{dom}.coding.net/api/user/key/{gk}",
            "html_url": f"https://{dom}.coding.net/u/{gk}", "name": u.get("Name", ""),
            "name_pinyin": u.get("NamePinYin", ""), "email": "", "phone": ""}


def hook_iteration(model, p, it):
    """Webhook iteration object (as captured)."""
    dom = model.team.get("Domain", "team")
    counts = p.iteration_counts().get(it["Code"], (0, 0, 0))
    d = {"title": it["Name"], "goal": it["Goal"],
         "html_url": f"https://{dom}.coding.net/p/{p.name}/iterations/{it['Code']}",
         "project_id": p.id, "code": it["Code"], "creator": hook_user(model, p, it["Creator"])}
    if it["Assignee"]:
        d["assignee"] = hook_user(model, p, it["Assignee"])
    d.update({"watchers": [], "status": it["Status"], "plan_issue_number": sum(counts),
              "start_at": it["StartAt"], "end_at": it["EndAt"],
              "created_at": it["CreatedAt"], "updated_at": it["UpdatedAt"]})
    return d


ISSUE_URL_SEGMENT = {"DEFECT": "bug-tracking", "REQUIREMENT": "requirements", "MISSION": "assignments",
                     "EPIC": "epics", "SUB_TASK": "assignments"}


def hook_issue(model, p, i):
    """Webhook issue object (real capture keys; unset dates are omitted)."""
    dom = model.team.get("Domain", "team")
    cat = p.issue_type(i)
    st = p.statuses.get(i.status_id, {"Id": 0, "Name": "", "Type": ""})
    seg = ISSUE_URL_SEGMENT.get(cat, "issues")
    d = {"html_url": f"https://{dom}.coding.net/p/{p.name}/{seg}/issues/{i.code}/detail",
         "typeZh": TYPE_ZH.get(cat, ""), "statusZh": STATUS_ZH.get(st["Type"], ""),
         "type": cat, "project_id": p.id, "code": i.code, "parent_code": i.parent_code,
         "title": i.name, "creator": hook_user(model, p, i.creator_id), "status": st["Name"]}
    if i.assignee_id:
        d["assignee"] = hook_user(model, p, i.assignee_id)
    if i.priority != "":
        d["priority"] = int(i.priority)
    if i.start_date:
        d["start_date"] = i.start_date
    if i.due_date:
        d["due_date"] = i.due_date
    it = p.iterations.get(i.iteration) if i.iteration else None
    if it is not None:
        d["iteration"] = hook_iteration(model, p, it)
    d.update({"description": i.description, "created_at": i.created_at, "updated_at": i.updated_at,
              "issue_status": {"id": st["Id"], "name": st["Name"], "type": st["Type"]},
              "watchers": [w for w in (hook_user(model, p, u) for u in i.watcher_ids) if w],
              "labels": [{"id": lid, "name": p.labels[lid]["Name"]} for lid in i.label_ids if lid in p.labels]})
    return d


def hook_member(model, p, m):
    """Webhook member object (as captured)."""
    dom = model.team.get("Domain", "team")
    gk = m.get("GlobalKey", "")
    return {"id": m["Id"], "login": gk, "avatar_url": m.get("Avatar", ""),
            "url": f"https://{dom}.coding.net/api/user/key/{gk}",
            "html_url": f"https://{dom}.coding.net/u/{gk}", "name": m.get("Name", ""),
            "name_pinyin": m.get("NamePinYin", "")}


def _sender(model, p):
    """The webhook ``sender`` (the first identity; real captures carry no email/phone)."""
    u = hook_user(model, p, model.identities[0]) if model.identities else None
    if u:
        u.pop("email", None)
        u.pop("phone", None)
    return u


def hook_envelope(model, p, event, action, entities):
    """Top-level Service Hook body without ``hook``/``hook_id`` (added at delivery)."""
    dom = model.team.get("Domain", "team")
    d = {"action": action, "event": event, "eventName": EVENT_NAMES.get(event, event),
         "sender": _sender(model, p),
         "project": {"id": p.id, "icon": p.info.get("Icon", ""),
                     "url": f"https://{dom}.coding.net/p/{p.name}",
                     "description": p.info.get("Description", ""), "name": p.name,
                     "display_name": p.info.get("DisplayName", "")},
         "team": {"id": model.team.get("Id", 0), "domain": dom, "url": f"https://{dom}.coding.net",
                  "introduction": model.team.get("Introduction", ""), "name": model.team.get("Name", dom),
                  "name_pinyin": model.team.get("NamePinYin", dom), "avatar": model.team.get("Avatar", "")}}
    d.update(entities)
    return d


class Webhooks:
    """Service Hook configuration and a background delivery thread.

    Mutations call emit(); the thread POSTs each payload with Coding's headers
    (signature when a secret is set) and records every attempt.  Options:
    events filter, duplicate (probability or bool), drop (count), delay_ms,
    reorder (pairwise swap).
    """

    def __init__(self, stop_event, seed):
        """No hook configured; the delivery thread starts at once."""
        self.lock = threading.Lock()
        self.config = None
        self.queue = queue.Queue()
        self.deliveries = collections.deque(maxlen=5000)
        self.next_id = 1
        self.stop = stop_event
        self.rng = random.Random(f"{seed}/webhooks")
        self.thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self.thread.start()

    def configure(self, spec):
        """POST /_sim/webhook: set (replace) the delivery configuration."""
        if not isinstance(spec, dict) or not isinstance(spec.get("url"), str) \
                or not spec["url"].startswith(("http://", "https://")):
            raise ControlError(400, "webhook needs a \"url\" (http:// or https://)")
        events = spec.get("events")
        if events is not None and (not isinstance(events, list) or not all(isinstance(e, str) for e in events)):
            raise ControlError(400, "webhook events must be a list of event names")
        dup = spec.get("duplicate", 0)
        if isinstance(dup, bool):
            dup = 1.0 if dup else 0.0
        if not isinstance(dup, (int, float)) or not 0 <= dup <= 1:
            raise ControlError(400, "webhook duplicate must be a probability 0..1 or a boolean")
        for k in ("drop", "delay_ms"):
            v = spec.get(k, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ControlError(400, f"webhook {k} must be a non-negative integer")
        secret = spec.get("secret")
        if secret is not None and not isinstance(secret, str):
            raise ControlError(400, "webhook secret must be a string")
        t = now_ms()
        hook_id = spec.get("hook_id") or str(uuid.uuid4())
        cfg = {"url": spec["url"], "secret": secret or None, "events": events,
               "duplicate": float(dup), "drop": spec.get("drop", 0), "delay_ms": spec.get("delay_ms", 0),
               "reorder": bool(spec.get("reorder", False)),
               "hook": {"id": hook_id, "name": "web", "type": "Repository", "active": True,
                        "events": events if events is not None else sorted(EVENT_NAMES),
                        "config": {"content_type": "application/json", "url": spec["url"]},
                        "created_at": t, "updated_at": t}}
        with self.lock:
            self.config = cfg
        return self.public_config()

    def public_config(self):
        """Configuration for GET /_sim/webhook (the secret is never shown)."""
        with self.lock:
            if self.config is None:
                return {"configured": False}
            c = self.config
            return {"configured": True, "url": c["url"], "has_secret": c["secret"] is not None,
                    "events": c["events"], "duplicate": c["duplicate"], "drop": c["drop"],
                    "delay_ms": c["delay_ms"], "reorder": c["reorder"], "hook_id": c["hook"]["id"]}

    def disable(self):
        """DELETE /_sim/webhook."""
        with self.lock:
            self.config = None

    def wants(self, event):
        """True when a hook is configured for ``event`` (avoid building unused payloads)."""
        with self.lock:
            c = self.config
            return c is not None and (c["events"] is None or event in c["events"])

    def emit(self, event, payload):
        """Queue a delivery of ``payload`` (dict without hook fields)."""
        with self.lock:
            c = self.config
            if c is None or (c["events"] is not None and event not in c["events"]):
                return
            body = dict(payload)
            body["hook"] = c["hook"]
            body["hook_id"] = c["hook"]["id"]
            data = dumps(body)
            headers = {"Content-Type": "application/json", "User-Agent": "Coding.net Hook",
                       "X-Coding-Event": event, "X-Coding-Service-Hook-Event": event,
                       "X-Coding-Service-Hook-Id": c["hook"]["id"],
                       "X-Coding-Service-Hook-Action": "webhook_http_post",
                       "X-Coding-Delivery": str(uuid.uuid4())}
            if c["secret"]:
                headers["X-Coding-Signature"] = "sha1=" + hmac.new(
                    c["secret"].encode("utf-8"), data, hashlib.sha1).hexdigest()
            self.queue.put((c, event, data, headers))

    def list(self):
        """Recorded delivery attempts."""
        with self.lock:
            return [dict(d) for d in self.deliveries]

    def clear(self):
        """Forget recorded attempts."""
        with self.lock:
            self.deliveries.clear()

    def _record(self, **kw):
        """Append one attempt record."""
        with self.lock:
            kw["id"] = self.next_id
            kw["ts"] = time.time()
            self.next_id += 1
            self.deliveries.append(kw)

    def _send(self, item):
        """Deliver one queued item (honouring drop / delay / duplicate)."""
        c, event, data, headers = item
        base = {"delivery": headers["X-Coding-Delivery"], "event": event, "url": c["url"]}
        with self.lock:
            drop = c["drop"] > 0
            if drop:
                c["drop"] -= 1
            dup = c["duplicate"] > 0 and self.rng.random() < c["duplicate"]
        if drop:
            self._record(attempt=1, status=None, error=None, dropped=True, **base)
            return
        if c["delay_ms"]:
            if self.stop.wait(c["delay_ms"] / 1000.0):
                return
        for attempt in (1, 2) if dup else (1,):
            status, err = None, None
            try:
                req = urllib.request.Request(c["url"], data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=5) as resp:
                    resp.read()
                    status = resp.status
            except urllib.error.HTTPError as e:
                status = e.code
            except Exception as e:      # network errors are recorded, never raised
                err = f"{type(e).__name__}: {e}"
            self._record(attempt=attempt, status=status, error=err, dropped=False, **base)

    def _run(self):
        """Delivery loop; with ``reorder`` each pair of events is sent swapped."""
        held = None
        while not self.stop.is_set():
            try:
                item = self.queue.get(timeout=0.3)
            except queue.Empty:
                if held is not None:
                    self._send(held)
                    held = None
                continue
            if item[0]["reorder"]:
                if held is None:
                    held = item
                    continue
                self._send(item)
                self._send(held)
                held = None
            else:
                if held is not None:
                    self._send(held)
                    held = None
                self._send(item)


# --------------------------------------------------------------------------
# Server state and OpenAPI processing
# --------------------------------------------------------------------------

class SimState:
    """Everything a request handler needs: model, tokens, faults, log, caches."""

    def __init__(self, model, personal, oauth, limited, rate_limit=0, prerender=False,
                 quiet=False):
        """Bind tokens to identities; faults, log and limiter start empty."""
        self.model = model
        self.personal = list(personal)
        self.oauth = list(oauth)
        self.limited = list(limited)        # [(token, frozenset(scopes))]
        self.tokens = {}
        self.faults = FaultQueue()
        self.limiter = RateLimiter(rate_limit)
        self.log = RequestLog()
        self.prerender = Prerender(prerender)
        self.quiet = quiet
        self.stop = threading.Event()
        self.webhooks = Webhooks(self.stop, model.seed)
        self.bind_tokens()

    def bind_tokens(self):
        """Map each configured token to its identity user (created on demand)."""
        model = self.model
        with model.lock:
            tokens = {}
            entries = ([(t, "token", None) for t in self.personal]
                       + [(t, "bearer", None) for t in self.oauth]
                       + [(t, "token", s) for t, s in self.limited])
            for k, (tok, scheme, scopes) in enumerate(entries):
                while len(model.identities) <= k:
                    u = identity_user(model, len(model.identities))
                    while u["Id"] in model.users:
                        u["Id"] += 1
                    model.users[u["Id"]] = u
                    model.identities.append(u["Id"])
                tokens[tok] = (scheme, model.identities[k], scopes)
            self.tokens = tokens

    def replace_model(self, new):
        """POST /_sim/reset: swap the data in place (the lock object stays)."""
        model = self.model
        with model.lock:
            old_version = model.version
            for k, v in new.__dict__.items():
                if k != "lock":
                    setattr(model, k, v)
            model.version = old_version + 1
        self.bind_tokens()

    def authenticate(self, header):
        """Identity for an Authorization header, or AuthFailure."""
        if not header:
            raise ApiError("AuthFailure", AUTH_MESSAGE)
        parts = header.strip().split(None, 1)
        if len(parts) != 2:
            raise ApiError("AuthFailure", AUTH_MESSAGE)
        scheme, cred = parts[0].lower(), parts[1].strip()
        found = None
        for tok, entry in self.tokens.items():
            if hmac.compare_digest(tok.encode("utf-8"), cred.encode("utf-8")):
                found = entry
        if found is None or found[0] != scheme:
            raise ApiError("AuthFailure", AUTH_MESSAGE)
        return Identity(found[1], scheme, found[2])


def auth_scheme(header):
    """"token" / "bearer" / None for logging (never the credential)."""
    if not header:
        return None
    s = header.strip().split(None, 1)[0].lower() if header.strip() else ""
    return s if s in ("token", "bearer") else None


def error_body(action, code, message, request_id=None):
    """Serialized error envelope (deterministic RequestId unless given)."""
    rid = request_id if request_id is not None else error_request_id(action or "", code, message)
    return dumps({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": rid}})


def process_api(state, body_ok, body, action, auth_header):
    """Run one OpenAPI request; returns (response bytes, error code or None)."""
    aname = action if isinstance(action, str) else ""
    try:
        if not body_ok:
            raise ApiError("InvalidParameter", "request body is not valid JSON")
        if action is None or action == "":
            raise missing("Action")
        if not isinstance(action, str):
            raise invalid("Action", action)
        if not state.limiter.allow(action):
            raise ApiError("RequestLimitExceeded", "Request limit exceeded")
        ident = state.authenticate(auth_header)
        if action not in ACTIONS:
            raise ApiError("InvalidAction", f"The requested action `{action}` does not exist.")
        scope = ACTIONS[action]
        if scope and ident.scopes is not None and scope not in ident.scopes:
            raise ApiError("InvalidParameterValue", "")
        model = state.model
        key = None
        if state.prerender.enabled:
            key = (action, ident.uid, json.dumps(body, sort_keys=True, ensure_ascii=False))
            hit = state.prerender.get(key, model.version)
            if hit is not None:
                return hit, None
        with model.lock:
            version = model.version
            result = HANDLERS[action](state, body, ident)
        result["RequestId"] = str(uuid.uuid4())
        data = dumps({"Response": result})
        if key is not None:
            state.prerender.put(key, version, data)
        return data, None
    except ApiError as e:
        return error_body(aname, e.code, e.message), e.code


WRONG_NUMBERS = {"Code", "CreatedAt", "UpdatedAt", "CompletedAt", "StartDate", "DueDate", "StartAt",
                 "EndAt", "IssueStatusId", "IterationId", "AssigneeId", "CreatorId", "IssueTypeId",
                 "ParentId", "ParentCode", "WorkingHours", "Id", "TeamId", "Assignee", "Creator",
                 "Starter", "Completer", "Deleter", "WaitProcessCount", "ProcessingCount",
                 "CompletedCount", "CompletedPercent", "Status", "EmailValidation", "PhoneValidation"}
WRONG_OBJECTS = {"Iteration", "IssueTypeDetail", "Assignee", "Creator", "Epic", "Parent",
                 "ProjectModule", "RequirementType", "DefectType", "Project", "User"}


def corrupt_types(obj):
    """wrong_types fault: numbers become "abc", objects become [] (paging envelope kept)."""
    if isinstance(obj, list):
        return [corrupt_types(x) for x in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for k, v in obj.items():
        if k in WRONG_OBJECTS and isinstance(v, dict):
            out[k] = []
        elif k in WRONG_NUMBERS and isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = "abc"
        else:
            out[k] = corrupt_types(v)
    return out


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------

HTML_ERRORS = {
    500: (b"<html><head><title>500 Internal Server Error</title></head>"
          b"<body><center><h1>500 Internal Server Error</h1></center></body></html>\n"),
    502: (b"<html><head><title>502 Bad Gateway</title></head>"
          b"<body><center><h1>502 Bad Gateway</h1></center></body></html>\n"),
}
CONTROL_RE = re.compile(r"^/_sim(?:/projects/([^/]+))?/(issues|iterations|members)(?:/([^/]+))?/?$")


class SimHTTPServer(ThreadingHTTPServer):
    """Threaded server: daemon threads, address reuse, a deeper accept queue."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, state):
        """Bind (IPv6 when the host has a colon) and keep the shared state."""
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, handler)
        self.state = state


class Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive; every request answered with a Content-Length."""

    protocol_version = "HTTP/1.1"
    server_version = "coding-sim/1.0"
    sys_version = ""
    timeout = 300

    def setup(self):
        """Disable Nagle: a response is one write, and clients should not wait on ACKs."""
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, fmt, *args):
        """Request log to stderr unless --quiet (request lines never carry tokens)."""
        if not self.server.state.quiet:
            sys.stderr.write("coding_sim: %s %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        """GET dispatch."""
        self._dispatch("GET")

    def do_POST(self):
        """POST dispatch."""
        self._dispatch("POST")

    def do_PATCH(self):
        """PATCH dispatch."""
        self._dispatch("PATCH")

    def do_PUT(self):
        """PUT dispatch."""
        self._dispatch("PUT")

    def do_DELETE(self):
        """DELETE dispatch."""
        self._dispatch("DELETE")

    # ---- plumbing -------------------------------------------------------

    def _read_body(self):
        """The request body (Content-Length or chunked); None when too large."""
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > MAX_BODY:
            return None
        return self.rfile.read(n) if n else b""

    def _head(self, status, length, ctype, extra=()):
        """Status line and headers as bytes."""
        reason = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", f"Server: {self.server_version}",
                 f"Date: {self.date_time_string()}", f"Content-Type: {ctype}",
                 f"Content-Length: {length}"]
        lines.extend(f"{k}: {v}" for k, v in extra)
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, status, body, ctype="application/json; charset=utf-8", extra=()):
        """Write a whole response in one write."""
        self.wfile.write(self._head(status, len(body), ctype, extra) + body)
        self._responded = True
        self._status = status

    def _json(self, status, obj):
        """Control-endpoint JSON answer."""
        self._send(status, dumps(obj))

    def _hard_close(self):
        """Close the socket now (fault simulation)."""
        self.close_connection = True
        self._responded = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _dispatch(self, method):
        """Route one request; any exception becomes a 500 JSON answer."""
        self._responded = False
        self._status = None
        self._action = None
        t0 = time.monotonic()
        try:
            raw = self._read_body()
            url = urllib.parse.urlsplit(self.path)
            path = url.path
            if raw is None:
                self.close_connection = True
                self._json(413, {"error": "request body too large"})
            elif path == "/_sim" or path.startswith("/_sim/"):
                self._control(method, path, urllib.parse.parse_qs(url.query), raw)
            elif path == "/open-api" or path.startswith("/open-api/"):
                self._api(method, path, url.query, raw)
            else:
                self._json(404, {"error": f"no such path {path}"})
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
        except Exception as e:      # robustness: never let one request kill the server
            if not self.server.state.quiet:
                traceback.print_exc(file=sys.stderr)
            if not self._responded:
                try:
                    self.close_connection = True
                    self._json(500, {"error": f"internal error: {type(e).__name__}: {e}"})
                except OSError:
                    pass
            else:
                self.close_connection = True
        if not self.server.state.quiet:
            self.log_message('"%s %s" %s %s %.1fms', method, self.path.split("?")[0],
                             self._status, self._action or "-", (time.monotonic() - t0) * 1000)

    # ---- OpenAPI --------------------------------------------------------

    def _api(self, method, path, query, raw):
        """POST /open-api[/<Action>]: faults, then the action, then post-faults."""
        st = self.server.state
        if method != "POST":
            self._send(405, dumps({"error": "use POST"}), extra=(("Allow", "POST"),))
            return
        body, ok = None, False
        try:
            if raw.strip():
                body = json.loads(raw.decode("utf-8"))
                ok = isinstance(body, dict)
        except (ValueError, UnicodeDecodeError):
            body = None
        action = body.get("Action") if ok else None
        if action is None:
            q = urllib.parse.parse_qs(query)
            vals = q.get("Action") or q.get("action")
            if vals:
                action = vals[0]
        if action is None:
            suffix = urllib.parse.unquote(path[len("/open-api"):].strip("/"))
            action = suffix or None
        akey = action if isinstance(action, str) else None
        self._action = akey
        auth = self.headers.get("Authorization")
        entry = st.log.add(akey, body, auth_scheme(auth))
        fault = st.faults.take(akey or "")
        ftype = fault["type"] if fault else None
        entry["fault"] = ftype
        if ftype in ("http_500", "http_502"):
            code = 500 if ftype == "http_500" else 502
            b = fault.get("body")
            self._send(code, b.encode("utf-8") if isinstance(b, str) else HTML_ERRORS[code],
                       ctype="text/html")
            return
        if ftype == "http_429":
            extra = []
            if fault.get("retry_after") is not None:
                extra.append(("Retry-After", str(int(math.ceil(fault["retry_after"])))))
            b = fault.get("body")
            self._send(429, b.encode("utf-8") if isinstance(b, str) else b"Too Many Requests\n",
                       ctype="text/plain; charset=utf-8", extra=extra)
            return
        if ftype in ("rate_limited", "auth_failure", "error"):
            if ftype == "rate_limited":
                code, msg, rid = "RequestLimitExceeded", "Request limit exceeded", None
            elif ftype == "auth_failure":
                code, msg, rid = "AuthFailure", AUTH_MESSAGE, None
            else:
                code = str(fault.get("code", "InternalError"))
                msg = str(fault.get("message", ""))
                rid = fault.get("request_id")
            entry["error_code"] = code
            self._send(200, error_body(akey, code, msg, rid))
            return
        if ftype == "invalid_json":
            self._send(200, b'{"Response": not json')
            return
        if ftype == "raw_body":
            self._send(fault.get("status", 200), base64.b64decode(fault["body_b64"]) if "body_b64" in fault
                       else fault["body"].encode("utf-8"))
            return
        if ftype == "drop_connection":
            self._hard_close()
            return
        if ftype == "delay":
            st.stop.wait(float(fault.get("seconds", 1)))
        data, code = process_api(st, ok, body, action, auth)
        entry["error_code"] = code
        if ftype == "truncated_json":
            self._send(200, data[:len(data) // 2])
        elif ftype == "wrong_types":
            self._send(200, dumps(corrupt_types(json.loads(data))))
        elif ftype == "stall_mid_body":
            half = len(data) // 2
            self.wfile.write(self._head(200, len(data), "application/json; charset=utf-8") + data[:half])
            self.wfile.flush()
            self._responded = True
            self._status = 200
            st.stop.wait(float(fault.get("seconds", 60)))
            self._hard_close()
        elif ftype == "huge_body":
            self._send_huge(data, float(fault.get("mb", 100)), fault.get("style", "string"))
        elif ftype == "chunked":
            self._send_chunked(data, int(fault.get("chunk", 4096)))
        else:
            self._send(200, data)

    def _send_chunked(self, data, size):
        """chunked fault: the answer without a Content-Length, in chunks of ``size``
        bytes, as servers behind some gateways send it."""
        reason = self.responses.get(200, ("",))[0]
        head = [f"HTTP/1.1 200 {reason}", f"Server: {self.server_version}",
                f"Date: {self.date_time_string()}",
                "Content-Type: application/json; charset=utf-8", "Transfer-Encoding: chunked"]
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        self._responded = True
        self._status = 200
        size = max(1, size)
        for i in range(0, len(data), size):
            piece = data[i:i + size]
            self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def _send_huge(self, data, mb, style):
        """huge_body fault: a valid JSON answer padded to ``mb`` MiB, streamed in chunks."""
        target = int(mb * 1024 * 1024)
        opening = b'{"Response":{'
        assert data.startswith(opening)
        rest = data[len(opening):]
        if style == "whitespace":
            prefix, suffix, fill = opening, rest, b" "
        else:
            prefix, suffix, fill = opening + b'"Padding":"', b'",' + rest, b"x"
        pad = max(0, target - len(prefix) - len(suffix))
        self.wfile.write(self._head(200, len(prefix) + pad + len(suffix),
                                    "application/json; charset=utf-8") + prefix)
        self._responded = True
        self._status = 200
        chunk = fill * 65536
        left = pad
        while left > 0:
            n = min(left, len(chunk))
            self.wfile.write(chunk[:n] if n < len(chunk) else chunk)
            left -= n
        self.wfile.write(suffix)

    # ---- control --------------------------------------------------------

    def _control(self, method, path, query, raw):
        """Route /_sim/... (no auth, JSON in and out)."""
        st = self.server.state
        try:
            body = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            self._json(400, {"error": "body is not valid JSON"})
            return
        qs = {k: v[0] for k, v in query.items()}
        try:
            result = self._control_route(st, method, path.rstrip("/") or "/", qs, body)
        except ControlError as e:
            self._json(e.status, {"error": e.message})
            return
        status, obj = result
        self._json(status, obj)

    def _control_route(self, st, method, path, qs, body):
        """The control endpoints; returns (HTTP status, JSON object)."""
        model = st.model
        if path == "/_sim/health" and method == "GET":
            return 200, {"ok": True}
        if path == "/_sim/fault" and method == "POST":
            return 200, {"ok": True, "fault": st.faults.add(body)}
        if path in ("/_sim/faults", "/_sim/fault"):
            if method == "GET":
                return 200, {"faults": st.faults.list()}
            if method == "DELETE":
                st.faults.clear()
                return 200, {"ok": True}
        if path == "/_sim/rate_limit":
            if method == "GET":
                return 200, {"per_second": st.limiter.per_second}
            if method == "POST":
                n = (body or {}).get("per_second") if isinstance(body, dict) else None
                if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0:
                    raise ControlError(400, "rate_limit needs {\"per_second\": N >= 0}")
                st.limiter.set(n)
                return 200, {"ok": True, "per_second": n}
        if path == "/_sim/log":
            if method == "GET":
                since = qs.get("since")
                if since is not None and not _INT_RE.match(since):
                    raise ControlError(400, "since must be an integer")
                return 200, {"requests": st.log.query(qs.get("action"),
                                                      int(since) if since is not None else None)}
            if method == "DELETE":
                st.log.clear()
                return 200, {"ok": True}
        if path == "/_sim/log/count" and method == "GET":
            return 200, {"count": st.log.count(qs.get("action"))}
        if path == "/_sim/reset" and method == "POST":
            return 200, self._reset(st, body or {})
        if path == "/_sim/dump" and method == "GET":
            only = qs.get("project")
            with model.lock:
                if only is not None and model.project(only) is None:
                    raise ControlError(404, f"project {only} not found")
                return 200, dump_model(model, only)
        if path == "/_sim/webhook":
            if method == "POST":
                return 200, st.webhooks.configure(body)
            if method == "GET":
                return 200, st.webhooks.public_config()
            if method == "DELETE":
                st.webhooks.disable()
                return 200, {"ok": True}
        if path == "/_sim/webhook/deliveries":
            if method == "GET":
                return 200, {"deliveries": st.webhooks.list()}
            if method == "DELETE":
                st.webhooks.clear()
                return 200, {"ok": True}
        m = CONTROL_RE.match(path)
        if m:
            return self._mutation(st, method, m, qs, body)
        raise ControlError(404, f"unknown control endpoint {method} {path}")

    def _reset(self, st, body):
        """POST /_sim/reset: regenerate from {"seed", "projects": {name: n}, "team"}."""
        if not isinstance(body, dict):
            raise ControlError(400, "reset body must be an object")
        old = st.model
        seed = body.get("seed", old.seed)
        team = body.get("team", old.team.get("Name", "team"))
        projects = body.get("projects")
        if projects is None:
            specs = [(name, len(p.issues)) for name, p in old.projects.items()]
        elif isinstance(projects, dict) and projects and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in projects.values()):
            specs = list(projects.items())
        else:
            raise ControlError(400, "projects must be an object {name: issue_count}")
        if isinstance(seed, bool) or not isinstance(seed, (int, str)) or not isinstance(team, str):
            raise ControlError(400, "seed must be an integer or string, team a string")
        new = generate_model(seed, team, specs, body.get("anchor_ms", old.anchor))
        st.replace_model(new)
        gc.unfreeze()   # let the old model go, then freeze the new one
        gc.collect()
        gc.freeze()
        return {"ok": True, "projects": {n: c for n, c in specs}}

    def _mutation(self, st, method, m, qs, body):
        """/_sim[/projects/P]/(issues|iterations|members)[/KEY]."""
        model = st.model
        pname, kind, key = m.group(1), m.group(2), m.group(3)
        event_override = qs.get("event")
        with model.lock:
            p = model.project(urllib.parse.unquote(pname)) if pname else model.first_project()
            if p is None:
                raise ControlError(404, f"project {pname} not found")
            if key is not None:
                if not _INT_RE.match(key):
                    raise ControlError(400, f"bad key {key}")
                key = int(key)
            if method == "GET":
                return 200, self._get_entity(model, p, kind, key)
            if method == "POST" and key is None:
                if body is None:
                    body = {}
                if kind == "issues":
                    i = create_issue(model, p, body)
                    out, ev = render_detail(model, p, i), ("ISSUE_CREATED", "create", i)
                elif kind == "iterations":
                    it = create_iteration(model, p, body)
                    out, ev = render_iteration(p, it), ("ITERATION_CREATED", "create", it)
                else:
                    mem = create_member(model, p, body)
                    out, ev = render_member(mem), ("MEMBER_CREATED", "added", mem)
                status = 201
            elif method in ("PATCH", "PUT") and key is not None:
                if not isinstance(body, dict):
                    raise ControlError(400, "body must be a JSON object")
                if kind == "issues":
                    i = patch_issue(model, p, key, body)
                    out, ev = render_detail(model, p, i), ("ISSUE_UPDATED", "update", i)
                elif kind == "iterations":
                    it = patch_iteration(model, p, key, body)
                    out, ev = render_iteration(p, it), ("ITERATION_UPDATED", "update", it)
                else:
                    mem = patch_member(model, p, key, body)
                    out, ev = render_member(mem), ("MEMBER_ROLE_UPDATED", "role_updated", mem)
                status = 200
            elif method == "DELETE" and key is not None:
                if kind == "issues":
                    i = p.issues.get(key)
                    if i is None:
                        raise ControlError(404, f"issue {key} not found")
                    payload = hook_issue(model, p, i) if st.webhooks.wants(event_override or "ISSUE_DELETED") else None
                    del p.issues[key]
                    ev = ("ISSUE_DELETED", "delete", payload)
                elif kind == "iterations":
                    it = p.iterations.get(key)
                    if it is None:
                        raise ControlError(404, f"iteration {key} not found")
                    payload = hook_iteration(model, p, it)
                    delete_iteration(model, p, key)
                    ev = ("ITERATION_DELETED", "delete", payload)
                else:
                    mem = p.members.pop(key, None)
                    if mem is None:
                        raise ControlError(404, f"member {key} not found")
                    ev = ("MEMBER_DELETED", "removed", hook_member(model, p, mem))
                out, status = {"ok": True}, 200
            else:
                raise ControlError(405, f"{method} not allowed here")
            p.touch()
            model.bump()
            self._emit(st, model, p, kind, method, ev, event_override)
            return status, out

    def _get_entity(self, model, p, kind, key):
        """GET on a collection or an item (dump shapes)."""
        if kind == "issues":
            if key is None:
                return {"issues": [render_dump_issue(model, p, p.issues[k]) for k in sorted(p.issues)]}
            if key not in p.issues:
                raise ControlError(404, f"issue {key} not found")
            return render_dump_issue(model, p, p.issues[key])
        if kind == "iterations":
            if key is None:
                return {"iterations": [render_iteration(p, p.iterations[k]) for k in sorted(p.iterations)]}
            if key not in p.iterations:
                raise ControlError(404, f"iteration {key} not found")
            return render_iteration(p, p.iterations[key])
        if key is None:
            return {"members": [render_member(p.members[k]) for k in sorted(p.members)]}
        if key not in p.members:
            raise ControlError(404, f"member {key} not found")
        return render_member(p.members[key])

    def _emit(self, st, model, p, kind, method, ev, override):
        """Queue the Service Hook event for a mutation (if a hook wants it)."""
        event, action, obj = ev
        event = override or event
        if obj is None or not st.webhooks.wants(event):
            return
        if kind == "issues":
            entity = obj if method == "DELETE" else hook_issue(model, p, obj)
            cat = entity["type"].lower()
            entities = {cat: entity, "issue": entity}
        elif kind == "iterations":
            entities = {"iteration": obj if method == "DELETE" else hook_iteration(model, p, obj)}
        else:
            entities = {"member": obj if method == "DELETE" else hook_member(model, p, obj)}
        st.webhooks.emit(event, hook_envelope(model, p, event, action, entities))


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def parse_project(spec):
    """``NAME:N`` (N issues; NAME alone = 200)."""
    name, _, n = spec.partition(":")
    if not name or (n and not n.isdigit()):
        raise argparse.ArgumentTypeError(f"bad --project {spec!r}: expected NAME:N")
    return name, int(n) if n else 200


def parse_limited(spec):
    """``TOKEN:scope1,scope2`` for --limited-token."""
    tok, sep, scopes = spec.rpartition(":")
    if not sep or not tok:
        raise argparse.ArgumentTypeError("bad --limited-token: expected TOKEN:scope1,scope2")
    s = frozenset(x.strip() for x in scopes.split(",") if x.strip())
    if not s <= set(SCOPES):
        raise argparse.ArgumentTypeError(f"bad --limited-token scopes: choose among {', '.join(SCOPES)}")
    return tok, s


def build_arg_parser():
    """The CLI (see the module docstring)."""
    ap = argparse.ArgumentParser(description="Simulated Coding (coding.net) OpenAPI server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--port-file", help="write the bound port here (atomically)")
    ap.add_argument("--team", default="acme")
    ap.add_argument("--project", action="append", type=parse_project, default=None,
                    help="NAME:N, repeatable (default backend:200)")
    ap.add_argument("--token", action="append", default=[], help="personal access token (Authorization: token X)")
    ap.add_argument("--oauth-token", action="append", default=[], help="OAuth token (Authorization: Bearer X)")
    ap.add_argument("--limited-token", action="append", type=parse_limited, default=[],
                    help="TOKEN:scope1,scope2 (scopes: issues, iterations, members)")
    ap.add_argument("--seed", default="42")
    ap.add_argument("--anchor-ms", type=int, default=DEFAULT_ANCHOR_MS,
                    help="time anchor of generated data (ms epoch)")
    ap.add_argument("--data", help="load a model (GET /_sim/dump format) instead of generating")
    ap.add_argument("--rate-limit", type=float, default=0, help="requests/second per Action (0 = off)")
    ap.add_argument("--prerender", action="store_true", help="cache successful response bodies")
    ap.add_argument("--quiet", action="store_true", help="no request logging on stderr")
    return ap


def main(argv=None):
    """Start the server; exit 0 on SIGTERM/SIGINT."""
    args = build_arg_parser().parse_args(argv)
    seed = int(args.seed) if re.match(r"^-?\d+$", args.seed) else args.seed
    if args.data:
        with open(args.data, encoding="utf-8") as fh:
            model = load_model(json.load(fh))
    else:
        model = generate_model(seed, args.team, args.project or [("backend", 200)], args.anchor_ms)
    gc.collect()
    gc.freeze()     # the model is long-lived: keep it out of GC scans (no pauses mid-request)
    state = SimState(model, args.token, args.oauth_token, args.limited_token,
                     rate_limit=args.rate_limit, prerender=args.prerender, quiet=args.quiet)
    server = SimHTTPServer((args.host, args.port), Handler, state)
    port = server.server_address[1]
    if args.port_file:
        tmp = f"{args.port_file}.tmp.{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"coding_sim listening on http://{host}:{port}", flush=True)

    def on_signal(_signum, _frame):
        """SIGTERM/SIGINT: ask the main loop to shut down."""
        state.stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    while not state.stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
