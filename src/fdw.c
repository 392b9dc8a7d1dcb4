/*-------------------------------------------------------------------------
 * fdw.c
 *		The FdwRoutine of coding_fdw: planning, scanning, EXPLAIN and
 *		IMPORT FOREIGN SCHEMA.
 *
 * A scan streams page by page: it keeps one parsed page in page_cxt (reset
 * before the next page is fetched) and the converted values of one row in
 * row_cxt (reset on every row), so a backend's memory is bounded by one
 * page whatever the table size.  All WHERE clauses are checked locally.
 *-------------------------------------------------------------------------
 */
#include "coding_fdw.h"

#include <math.h>

#include "access/table.h"
#include "commands/defrem.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(coding_fdw_handler);

/* Planner state kept in baserel->fdw_private. */
typedef struct CodingPlanState
{
	CodingConnInfo *conn;
	CodingTableInfo *tinfo;
	Bitmapset  *attrs_used;		/* attributes the query needs */
} CodingPlanState;

/* Indexes into ForeignScan.fdw_private. */
enum CodingPrivateIndex
{
	PRIV_ATTRS_USED,			/* integer list of attnums (offset) */
	PRIV_NEED_DETAIL			/* Integer: 1 if DescribeIssue per row */
};

/* Executor state of one foreign scan. */
typedef struct CodingScanState
{
	CodingConnInfo *conn;
	CodingTableInfo *tinfo;
	CodingColumn *cols;
	int			ncols;
	bool		need_detail;	/* a detail-only column is referenced */
	ExprState  *list_qual;		/* quals on list columns, checked before
								 * DescribeIssue is called for a row */

	MemoryContext page_cxt;		/* the current page; reset per page */
	MemoryContext row_cxt;		/* one row's values; reset per row */

	int			page_number;	/* next page to fetch, 1-based */
	bool		last_page;		/* no page after the current one */
	cJSON	   *next_item;		/* next object of the current page */
	int64		project_id;		/* project_members: from DescribeProjectByName */

	CodingCallStats stats;
	int64		pages;
	int64		skipped_details;	/* rows dropped before DescribeIssue */
} CodingScanState;

static const char *const list_actions[] = {
	"DescribeIssueListWithPage", "DescribeIterationList", "DescribeProjectMembers"
};

/*
 * require_project
 *		A scan needs a project: from the table or the server.
 */
static void
require_project(CodingConnInfo *conn, Oid foreigntableid)
{
	if (conn->project == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("foreign table \"%s\" has no Coding project",
						get_rel_name(foreigntableid)),
				 errhint("Set the \"project\" option on the foreign table or on server \"%s\".",
						 conn->servername)));
}

/*
 * codingGetForeignRelSize
 *		Read the options and guess the row count.
 *
 * Without pushdown every scan reads the whole resource, so the estimate is
 * a constant per resource; it only has to rank plans sensibly.
 */
static void
codingGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel,
						Oid foreigntableid)
{
	CodingPlanState *ps = palloc0(sizeof(CodingPlanState));
	Oid			userid = OidIsValid(baserel->userid) ? baserel->userid : GetUserId();
	ListCell   *lc;

	ps->tinfo = coding_get_table_info(foreigntableid);
	ps->conn = coding_get_conn_info(baserel->serverid, userid, foreigntableid);
	require_project(ps->conn, foreigntableid);

	/* columns needed: the target list and every qual (checked locally) */
	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid,
				   &ps->attrs_used);
	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);

		pull_varattnos((Node *) rinfo->clause, baserel->relid, &ps->attrs_used);
	}

	switch (ps->tinfo->resource)
	{
		case CODING_RES_ISSUES:
			baserel->rows = 1000;
			break;
		case CODING_RES_ITERATIONS:
		case CODING_RES_MEMBERS:
			baserel->rows = 50;
			break;
	}
	baserel->rows = clamp_row_est(baserel->rows *
								  clauselist_selectivity(root,
														 baserel->baserestrictinfo,
														 0, JOIN_INNER, NULL));
	baserel->fdw_private = ps;
}

/*
 * codingGetForeignPaths
 *		One path: a paged scan.  Each page is an HTTP round trip, which is
 *		what the cost counts.
 */
static void
codingGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel,
					  Oid foreigntableid)
{
	CodingPlanState *ps = (CodingPlanState *) baserel->fdw_private;
	double		remote_rows = ps->tinfo->resource == CODING_RES_ISSUES ? 1000 : 50;
	double		pages = ceil(remote_rows / ps->conn->page_size);
	Cost		startup_cost = 100.0;
	Cost		total_cost = startup_cost + pages * 1000.0 +
		remote_rows * (cpu_tuple_cost * 10);

	add_path(baserel, (Path *)
			 create_foreignscan_path(root, baserel, NULL, baserel->rows,
									 startup_cost, total_cost,
									 NIL, NULL, NULL, NIL));
}

/*
 * detail_attrs
 *		The attributes (offset by FirstLowInvalidHeapAttributeNumber) among
 *		attrs_used that only DescribeIssue returns.
 */
static Bitmapset *
detail_attrs(Relation rel, CodingTableInfo *tinfo, Bitmapset *attrs_used)
{
	Bitmapset  *result = NULL;
	CodingColumn *cols;
	int			ncols;
	int			i;

	if (tinfo->resource != CODING_RES_ISSUES)
		return NULL;
	cols = coding_make_columns(rel, tinfo->resource, attrs_used, &ncols);
	for (i = 0; i < ncols; i++)
		if (cols[i].detail_only)
			result = bms_add_member(result,
									cols[i].attnum - FirstLowInvalidHeapAttributeNumber);
	return result;
}

/*
 * codingGetForeignPlan
 *		Build the ForeignScan.  Every qual stays a local qual; when details
 *		are fetched, the quals that read list columns only are also kept in
 *		fdw_exprs, so the scan can drop a row before paying a DescribeIssue
 *		call for it.
 */
static ForeignScan *
codingGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel,
					 Oid foreigntableid, ForeignPath *best_path,
					 List *tlist, List *scan_clauses, Plan *outer_plan)
{
	CodingPlanState *ps = (CodingPlanState *) baserel->fdw_private;
	List	   *attrs = NIL;
	List	   *list_quals = NIL;
	Bitmapset  *detail;
	Relation	rel;
	ListCell   *lc;
	int			x = -1;

	while ((x = bms_next_member(ps->attrs_used, x)) >= 0)
		attrs = lappend_int(attrs, x);

	rel = table_open(foreigntableid, NoLock);
	detail = detail_attrs(rel, ps->tinfo, ps->attrs_used);
	table_close(rel, NoLock);

	scan_clauses = extract_actual_clauses(scan_clauses, false);
	if (detail != NULL)
	{
		foreach(lc, scan_clauses)
		{
			Node	   *clause = (Node *) lfirst(lc);
			Bitmapset  *vars = NULL;

			/* evaluated twice: only when that cannot change the result */
			if (contain_volatile_functions(clause) || contain_subplans(clause))
				continue;
			pull_varattnos(clause, baserel->relid, &vars);
			if (!bms_overlap(vars, detail) &&
				!bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, vars))
				list_quals = lappend(list_quals, clause);
		}
	}
	return make_foreignscan(tlist, scan_clauses, baserel->relid, list_quals,
							list_make2(attrs, makeInteger(detail != NULL ? 1 : 0)),
							NIL, NIL, outer_plan);
}

/*
 * codingBeginForeignScan
 *		Set up the scan; no API call is made until the first row is asked for.
 */
static void
codingBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *plan = (ForeignScan *) node->ss.ps.plan;
	EState	   *estate = node->ss.ps.state;
	Relation	rel = node->ss.ss_currentRelation;
	CodingScanState *ss = palloc0(sizeof(CodingScanState));
	RangeTblEntry *rte = exec_rt_fetch(plan->scan.scanrelid, estate);
	Oid			userid = OidIsValid(rte->checkAsUser) ? rte->checkAsUser : GetUserId();
	List	   *attrs = (List *) list_nth(plan->fdw_private, PRIV_ATTRS_USED);
	Bitmapset  *wanted = NULL;
	ListCell   *lc;

	node->fdw_state = ss;
	ss->tinfo = coding_get_table_info(RelationGetRelid(rel));
	ss->conn = coding_get_conn_info(GetForeignServerIdByRelId(RelationGetRelid(rel)),
									userid, RelationGetRelid(rel));
	ss->need_detail = intVal(list_nth(plan->fdw_private, PRIV_NEED_DETAIL)) != 0;
	ss->list_qual = ExecInitQual(plan->fdw_exprs, (PlanState *) node);

	foreach(lc, attrs)
		wanted = bms_add_member(wanted, lfirst_int(lc));
	ss->cols = coding_make_columns(rel, ss->tinfo->resource, wanted, &ss->ncols);

	ss->page_cxt = AllocSetContextCreate(estate->es_query_cxt,
										 "coding_fdw page", ALLOCSET_DEFAULT_SIZES);
	ss->row_cxt = AllocSetContextCreate(estate->es_query_cxt,
										"coding_fdw row", ALLOCSET_DEFAULT_SIZES);
	ss->page_number = 1;
	ss->project_id = -1;

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	require_project(ss->conn, RelationGetRelid(rel));
	if (ss->conn->auth_header == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("no Coding token for server \"%s\"", ss->conn->servername),
				 errhint("Create a user mapping with the token: CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (token '...').",
						 quote_identifier(ss->conn->servername))));
}

/*
 * malformed
 *		Raise the "malformed response" error for a page that does not have
 *		the documented shape.
 */
static void
malformed(CodingScanState *ss, const char *action, const char *what)
{
	CodingResult r = {0};

	r.errclass = CODING_ERR_MALFORMED;
	r.transport_error = (char *) what;
	coding_report_error(ss->conn, action, &r, ERROR);
}

/* json_number: a numeric member, or dflt when absent or not a number. */
static double
json_number(cJSON *obj, const char *name, double dflt)
{
	cJSON	   *v = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/*
 * fetch_project_id
 *		project_members needs the project's numeric Id.
 */
static void
fetch_project_id(CodingScanState *ss)
{
	cJSON	   *body = cJSON_CreateObject();
	cJSON	   *resp;
	cJSON	   *project;

	cJSON_AddStringToObject(body, "ProjectName", ss->conn->project);
	resp = coding_call(ss->conn, "DescribeProjectByName", body, &ss->stats);
	project = cJSON_GetObjectItemCaseSensitive(resp, "Project");
	if (!cJSON_IsObject(project))
	{
		CodingResult r = {0};

		r.errclass = CODING_ERR_NOT_FOUND;
		r.transport_error = "the answer has no \"Project\"";
		coding_report_error(ss->conn, "DescribeProjectByName", &r, ERROR);
	}
	if (json_number(project, "Id", -1) <= 0)
		malformed(ss, "DescribeProjectByName", "the project has no numeric \"Id\"");
	ss->project_id = (int64) json_number(project, "Id", -1);
}

/*
 * fetch_page
 *		Fetch the next page into a freshly reset page_cxt and decide whether
 *		it is the last one.
 */
static void
fetch_page(CodingScanState *ss)
{
	CodingResource res = ss->tinfo->resource;
	const char *action = list_actions[res];
	int			page_size = ss->conn->page_size;
	MemoryContext old;
	cJSON	   *body;
	cJSON	   *resp;
	cJSON	   *data;
	cJSON	   *list;
	cJSON	   *item;
	int			count;

	MemoryContextReset(ss->page_cxt);
	ss->next_item = NULL;
	old = MemoryContextSwitchTo(ss->page_cxt);

	if (res == CODING_RES_MEMBERS && ss->project_id < 0)
	{
		/* keep the Id across pages and rescans: it outlives page_cxt */
		MemoryContextSwitchTo(old);
		fetch_project_id(ss);
		MemoryContextSwitchTo(ss->page_cxt);
	}

	body = cJSON_CreateObject();
	switch (res)
	{
		case CODING_RES_ISSUES:
			cJSON_AddStringToObject(body, "ProjectName", ss->conn->project);
			cJSON_AddStringToObject(body, "IssueType", ss->tinfo->issue_type);
			cJSON_AddNumberToObject(body, "PageNumber", ss->page_number);
			cJSON_AddNumberToObject(body, "PageSize", page_size);
			/* codes never change, so paging by code is stable */
			cJSON_AddStringToObject(body, "SortKey", "CODE");
			cJSON_AddStringToObject(body, "SortValue", "ASC");
			cJSON_AddTrueToObject(body, "ShowSubIssues");
			break;
		case CODING_RES_ITERATIONS:
			cJSON_AddStringToObject(body, "ProjectName", ss->conn->project);
			/* Offset is a 0-based page index (coding-api.md §2.3) */
			cJSON_AddNumberToObject(body, "Offset", ss->page_number - 1);
			cJSON_AddNumberToObject(body, "Limit", page_size);
			break;
		case CODING_RES_MEMBERS:
			cJSON_AddNumberToObject(body, "ProjectId", (double) ss->project_id);
			cJSON_AddNumberToObject(body, "PageNumber", ss->page_number);
			cJSON_AddNumberToObject(body, "PageSize", page_size);
			break;
	}

	resp = coding_call(ss->conn, action, body, &ss->stats);
	ss->pages++;

	data = cJSON_GetObjectItemCaseSensitive(resp, "Data");
	if (!cJSON_IsObject(data))
		malformed(ss, action, "the answer has no \"Data\" object");
	list = cJSON_GetObjectItemCaseSensitive(data,
											res == CODING_RES_MEMBERS ? "ProjectMembers" : "List");
	if (cJSON_IsNull(list) || list == NULL)
		list = cJSON_CreateArray();
	if (!cJSON_IsArray(list))
		malformed(ss, action,
				  res == CODING_RES_MEMBERS ? "\"Data.ProjectMembers\" is not an array"
				  : "\"Data.List\" is not an array");
	count = 0;
	cJSON_ArrayForEach(item, list)
	{
		if (!cJSON_IsObject(item))
			malformed(ss, action, "an element of the page is not an object");
		count++;
	}

	/* a short page is the last; so is the page the server says is last */
	ss->last_page = count < page_size;
	switch (res)
	{
		case CODING_RES_ISSUES:
			if (ss->page_number >= json_number(data, "TotalPage", INFINITY))
				ss->last_page = true;
			break;
		case CODING_RES_ITERATIONS:
			if (ss->page_number >= json_number(data, "TotalPage", INFINITY))
				ss->last_page = true;
			break;
		case CODING_RES_MEMBERS:
			if ((double) (ss->page_number - 1) * page_size + count >=
				json_number(data, "TotalCount", INFINITY))
				ss->last_page = true;
			break;
	}
	ss->page_number++;
	ss->next_item = list->child;
	MemoryContextSwitchTo(old);
}

/*
 * fetch_detail
 *		DescribeIssue for one issue, for the detail-only columns.  Returns
 *		the list object with the detail's members added, in row_cxt.
 */
static cJSON *
fetch_detail(CodingScanState *ss, cJSON *item)
{
	cJSON	   *code = cJSON_GetObjectItemCaseSensitive(item, "Code");
	cJSON	   *body;
	cJSON	   *resp;
	cJSON	   *issue;
	cJSON	   *merged;
	cJSON	   *field;

	if (!cJSON_IsNumber(code))
		malformed(ss, "DescribeIssueListWithPage", "an issue has no numeric \"Code\"");
	body = cJSON_CreateObject();
	cJSON_AddStringToObject(body, "ProjectName", ss->conn->project);
	cJSON_AddNumberToObject(body, "IssueCode", code->valuedouble);
	resp = coding_call(ss->conn, "DescribeIssue", body, &ss->stats);
	issue = cJSON_GetObjectItemCaseSensitive(resp, "Issue");
	if (!cJSON_IsObject(issue))
		malformed(ss, "DescribeIssue", "the answer has no \"Issue\" object");

	/* the list's fields win; DescribeIssue adds the ones it lacks */
	merged = cJSON_Duplicate(item, true);
	if (merged == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	cJSON_ArrayForEach(field, issue)
	{
		if (!cJSON_HasObjectItem(merged, field->string))
			cJSON_AddItemReferenceToObject(merged, field->string, field);
	}
	return merged;
}

/*
 * next_item
 *		The next object of the current page, fetching the next page when the
 *		current one is used up; NULL at the end.
 */
static cJSON *
next_item(CodingScanState *ss)
{
	cJSON	   *item;

	while (ss->next_item == NULL)
	{
		if (ss->last_page && ss->page_number > 1)
			return NULL;
		fetch_page(ss);
	}
	item = ss->next_item;
	ss->next_item = item->next;
	return item;
}

/*
 * list_qual_passes
 *		Whether a row can pass the quals on list columns; only then is it
 *		worth a DescribeIssue call.  The slot is filled with the list
 *		columns (detail-only ones NULL) for the check.
 */
static bool
list_qual_passes(ForeignScanState *node, CodingScanState *ss, cJSON *item)
{
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	bool		pass;

	if (ss->list_qual == NULL)
		return true;
	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	coding_row_to_values(ss->cols, ss->ncols, item, item, ss->conn,
						 ss->tinfo->resource, slot->tts_values, slot->tts_isnull);
	ExecStoreVirtualTuple(slot);
	econtext->ecxt_scantuple = slot;
	pass = ExecQual(ss->list_qual, econtext);
	ResetExprContext(econtext);
	return pass;
}

/*
 * codingIterateForeignScan
 *		Return the next row.  With detail columns, rows that fail the quals
 *		on list columns are skipped before their DescribeIssue call.
 */
static TupleTableSlot *
codingIterateForeignScan(ForeignScanState *node)
{
	CodingScanState *ss = (CodingScanState *) node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	MemoryContext old;
	cJSON	   *item;

	old = MemoryContextSwitchTo(ss->row_cxt);
	for (;;)
	{
		MemoryContextReset(ss->row_cxt);
		CHECK_FOR_INTERRUPTS();
		item = next_item(ss);
		if (item == NULL)
		{
			MemoryContextSwitchTo(old);
			return ExecClearTuple(slot);
		}
		if (!ss->need_detail || list_qual_passes(node, ss, item))
			break;
		ss->skipped_details++;
	}

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	coding_row_to_values(ss->cols, ss->ncols,
						 ss->need_detail ? fetch_detail(ss, item) : item, item,
						 ss->conn, ss->tinfo->resource,
						 slot->tts_values, slot->tts_isnull);
	MemoryContextSwitchTo(old);
	return ExecStoreVirtualTuple(slot);
}

/*
 * codingReScanForeignScan
 *		Start again from the first page (the inner side of a nested loop).
 */
static void
codingReScanForeignScan(ForeignScanState *node)
{
	CodingScanState *ss = (CodingScanState *) node->fdw_state;

	MemoryContextReset(ss->page_cxt);
	MemoryContextReset(ss->row_cxt);
	ss->next_item = NULL;
	ss->page_number = 1;
	ss->last_page = false;
}

/* codingEndForeignScan: free the page and row memory. */
static void
codingEndForeignScan(ForeignScanState *node)
{
	CodingScanState *ss = (CodingScanState *) node->fdw_state;

	if (ss == NULL)
		return;
	MemoryContextDelete(ss->page_cxt);
	MemoryContextDelete(ss->row_cxt);
}

/*
 * codingExplainForeignScan
 *		VERBOSE shows the Coding request; ANALYZE the calls made.  Never the
 *		token.
 */
static void
codingExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	CodingScanState *ss = (CodingScanState *) node->fdw_state;
	StringInfoData buf;

	if (es->verbose)
	{
		initStringInfo(&buf);
		appendStringInfo(&buf, "%s", list_actions[ss->tinfo->resource]);
		switch (ss->tinfo->resource)
		{
			case CODING_RES_ISSUES:
				appendStringInfo(&buf, " ProjectName=%s IssueType=%s SortKey=CODE SortValue=ASC PageSize=%d",
								 ss->conn->project, ss->tinfo->issue_type,
								 ss->conn->page_size);
				break;
			case CODING_RES_ITERATIONS:
				appendStringInfo(&buf, " ProjectName=%s Limit=%d",
								 ss->conn->project, ss->conn->page_size);
				break;
			case CODING_RES_MEMBERS:
				appendStringInfo(&buf, " (ProjectId of %s) PageSize=%d",
								 ss->conn->project, ss->conn->page_size);
				break;
		}
		ExplainPropertyText("Coding request", buf.data, es);
		ExplainPropertyText("Coding details",
							!ss->need_detail ? "none" :
							ss->list_qual ? "DescribeIssue per row passing the list filter" :
							"DescribeIssue per row", es);
	}
	if (es->analyze)
	{
		ExplainPropertyInteger("Coding calls", NULL, ss->stats.calls, es);
		ExplainPropertyInteger("Coding pages", NULL, ss->pages, es);
		ExplainPropertyInteger("Coding retries", NULL, ss->stats.retries, es);
		if (ss->need_detail)
			ExplainPropertyInteger("Coding details skipped", NULL,
								   ss->skipped_details, es);
		if (es->costs)
			ExplainPropertyInteger("Coding bytes", NULL, ss->stats.bytes, es);
	}
}

/*
 * coding_import_columns_sql
 *		Append the column list of a resource's foreign table.
 */
void
coding_import_columns_sql(StringInfo buf, CodingResource res)
{
	const CodingKnownColumn *cols;
	int			ncols;
	int			i;

	cols = coding_known_columns(res, &ncols);
	for (i = 0; i < ncols; i++)
		appendStringInfo(buf, "%s\n  %s %s%s", i ? "," : "",
						 quote_identifier(cols[i].name), cols[i].type,
						 cols[i].not_null ? " NOT NULL" : "");
}

/*
 * codingImportForeignSchema
 *		The remote schema is the Coding project: check it exists, then create
 *		issues, iterations and project_members (core applies LIMIT TO and
 *		EXCEPT to what is returned).
 */
static List *
codingImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	CodingConnInfo *conn = coding_get_conn_info(serverOid, GetUserId(), InvalidOid);
	List	   *commands = NIL;
	cJSON	   *body;
	cJSON	   *resp;
	ListCell   *lc;
	int			res;

	foreach(lc, stmt->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid option \"%s\"", def->defname),
				 errhint("IMPORT FOREIGN SCHEMA of coding_fdw takes no options.")));
	}

	conn->project = stmt->remote_schema;
	body = cJSON_CreateObject();
	cJSON_AddStringToObject(body, "ProjectName", conn->project);
	resp = coding_call(conn, "DescribeProjectByName", body, NULL);
	if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(resp, "Project")))
	{
		CodingResult r = {0};

		r.errclass = CODING_ERR_NOT_FOUND;
		r.transport_error = "the answer has no \"Project\"";
		coding_report_error(conn, "DescribeProjectByName", &r, ERROR);
	}

	for (res = CODING_RES_ISSUES; res <= CODING_RES_MEMBERS; res++)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		appendStringInfo(&buf, "CREATE FOREIGN TABLE %s (",
						 quote_identifier(coding_resource_name(res)));
		coding_import_columns_sql(&buf, res);
		appendStringInfo(&buf, "\n) SERVER %s OPTIONS (resource %s, project %s)",
						 quote_identifier(conn->servername),
						 quote_literal_cstr(coding_resource_name(res)),
						 quote_literal_cstr(stmt->remote_schema));
		commands = lappend(commands, buf.data);
	}
	return commands;
}

/*
 * coding_fdw_handler
 *		The FdwRoutine of coding_fdw (read-only).
 */
Datum
coding_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	routine->GetForeignRelSize = codingGetForeignRelSize;
	routine->GetForeignPaths = codingGetForeignPaths;
	routine->GetForeignPlan = codingGetForeignPlan;
	routine->BeginForeignScan = codingBeginForeignScan;
	routine->IterateForeignScan = codingIterateForeignScan;
	routine->ReScanForeignScan = codingReScanForeignScan;
	routine->EndForeignScan = codingEndForeignScan;
	routine->ExplainForeignScan = codingExplainForeignScan;
	routine->ImportForeignSchema = codingImportForeignSchema;
	PG_RETURN_POINTER(routine);
}
