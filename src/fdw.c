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
#include "json_fast.h"

#include <math.h>

#include "access/stratnum.h"
#include "access/sysattr.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "commands/defrem.h"
#include "commands/explain.h"
#include "commands/vacuum.h"
#include "common/pg_prng.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "parser/parsetree.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(coding_fdw_handler);

/*
 * One HTTP round trip to Coding (50-200 ms) in planner cost units, where a
 * sequential page read (0.1 ms) costs 1: calls are what a plan pays for.
 */
#define CODING_CALL_COST	1000.0

/*
 * Rows assumed before a scan has told us how many there are.  A team's
 * project typically holds thousands of issues; assuming few would make a
 * fresh session list a large project for a join of a handful of rows.
 */
#define DEFAULT_ISSUE_ROWS	10000.0
#define DEFAULT_OTHER_ROWS	50.0

/* DescribeIssue calls in flight at once (the rate limit still applies). */
#define CODING_DETAIL_CONCURRENCY	8

/* Planner state kept in baserel->fdw_private. */
typedef struct CodingPlanState
{
	CodingConnInfo *conn;
	CodingTableInfo *tinfo;
	Bitmapset  *attrs_used;		/* attributes the query needs */
	Bitmapset  *detail_used;	/* those only DescribeIssue returns */
	bool		need_detail;	/* detail_used is not empty */
	bool		key_allowed;	/* DescribeIssue alone gives every column used */
	AttrNumber	code_attno;		/* the issue code column, if pushable */
	double		remote_total;	/* rows Coding holds, learned or assumed */
} CodingPlanState;

/* Indexes into ForeignScan.fdw_private. */
enum CodingPrivateIndex
{
	PRIV_ATTRS_USED,			/* integer list of attnums (offset) */
	PRIV_NEED_DETAIL,			/* Integer: 1 if DescribeIssue per row */
	PRIV_ITEMS,					/* pushed items: (column, op, has value) */
	PRIV_NVALUES,				/* Integer: value expressions in fdw_exprs */
	PRIV_SORT_KEY,				/* String: Coding SortKey */
	PRIV_SORT_DESC,				/* Integer: 1 for SortValue DESC */
	PRIV_READ_AHEAD				/* Integer: 1 if every page will be read */
};

/*
 * One row of the current page: the list object (what raw shows) and the
 * object its columns are read from (with DescribeIssue's fields when
 * details are needed); full is NULL for a row the list filter dropped.
 */
typedef struct PageRow
{
	cJSON	   *item;
	cJSON	   *full;
} PageRow;

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

	List	   *items;			/* CodingPushedItem, as planned */
	List	   *value_states;	/* ExprState per item with a value */
	bool		values_need_outer;	/* a value comes from a nested loop */
	const char *sort_key;
	bool		sort_desc;

	MemoryContext request_cxt;	/* the request; rebuilt on rescan */
	MemoryContext page_cxt;		/* the current page; reset per page */
	MemoryContext row_cxt;		/* one row's values; reset per row */
	MemoryContext ahead_cxt;	/* the next page's call, made ahead */
	bool		read_ahead;		/* the query reads every page: ask early */

	bool		request_ready;
	CodingRequest request;
	ListCell   *next_code;		/* key lookup: next code to describe */

	int			page_number;	/* next page to fetch, 1-based */
	bool		last_page;		/* no page after the current one */
	PageRow    *rows;			/* the current page's rows, in page_cxt */
	int			nrows;
	int			pos;			/* next row to return */
	int			described;		/* rows [0, described) had their details */
	int			detail_chunk;	/* rows to describe next (grows) */
	int64		project_id;		/* project_members: from DescribeProjectByName */

	CodingCallStats stats;
	int64		pages;
	int64		skipped_details;	/* rows dropped before DescribeIssue */
} CodingScanState;

static const char *const list_actions[] = {
	"DescribeIssueListWithPage", "DescribeIterationList", "DescribeProjectMembers"
};

/*
 * Rows per (server, project, resource, issue type) as the last unfiltered
 * listing reported them (TotalCount).  Learning the size from scans that
 * happen anyway costs no call; planning never calls Coding.
 */
typedef struct KnownTotal
{
	struct KnownTotal *next;
	Oid			serverid;
	CodingResource res;
	char	   *project;
	char	   *issue_type;
	double		total;
} KnownTotal;

static KnownTotal *known_totals = NULL;

static const CodingJsonRowFilter *row_filter(CodingScanState *ss);

/* known_total: the remembered size, or -1. */
static double
known_total(CodingConnInfo *conn, CodingTableInfo *tinfo)
{
	KnownTotal *k;

	for (k = known_totals; k; k = k->next)
		if (k->serverid == conn->serverid && k->res == tinfo->resource &&
			strcmp(k->project, conn->project) == 0 &&
			strcmp(k->issue_type, tinfo->issue_type) == 0)
			return k->total;
	return -1;
}

/* At most this many are kept, the newest (servers come and go). */
#define KNOWN_TOTALS_MAX	64

/* remember_total: keep what an unfiltered listing said it holds. */
static void
remember_total(CodingConnInfo *conn, CodingTableInfo *tinfo, double total)
{
	KnownTotal *k;
	KnownTotal *last = NULL;
	int			n = 0;

	for (k = known_totals; k; k = k->next)
	{
		if (k->serverid == conn->serverid && k->res == tinfo->resource &&
			strcmp(k->project, conn->project) == 0 &&
			strcmp(k->issue_type, tinfo->issue_type) == 0)
			break;
		n++;
		if (k->next && k->next->next == NULL)
			last = k;
	}
	if (k == NULL && n >= KNOWN_TOTALS_MAX && last != NULL)
	{
		/* forget the oldest (the list's tail) */
		KnownTotal *old = last->next;

		last->next = NULL;
		pfree(old->project);
		pfree(old->issue_type);
		pfree(old);
	}
	if (k == NULL)
	{
		k = MemoryContextAllocZero(TopMemoryContext, sizeof(KnownTotal));
		k->serverid = conn->serverid;
		k->res = tinfo->resource;
		k->project = MemoryContextStrdup(TopMemoryContext, conn->project);
		k->issue_type = MemoryContextStrdup(TopMemoryContext, tinfo->issue_type);
		k->next = known_totals;
		known_totals = k;
	}
	k->total = total;
}

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
 * detail_attrs
 *		The attributes (offset by FirstLowInvalidHeapAttributeNumber) among
 *		the issue columns used that only DescribeIssue returns.
 */
static Bitmapset *
detail_attrs(CodingColumn *cols, int ncols)
{
	Bitmapset  *result = NULL;
	int			i;

	for (i = 0; i < ncols; i++)
		if (cols[i].detail_only)
			result = bms_add_member(result,
									cols[i].attnum - FirstLowInvalidHeapAttributeNumber);
	return result;
}

/*
 * key_lookup_allowed
 *		A lookup by code uses DescribeIssue alone, whose object lacks some of
 *		the list's fields (AssigneeId, Assignees, CreatorId, ParentId,
 *		ParentCode, Iteration.Id) and differs as a whole (raw): allowed only
 *		when the query reads none of them, by any column name or "field"
 *		option, unless the column has a fallback DescribeIssue does return
 *		(assignee_id reads Assignee.Id), so every plan gives the same rows.
 */
static bool
key_lookup_allowed(CodingColumn *cols, int ncols, Bitmapset *attrs_used)
{
	static const char *const list_only[] = {"AssigneeId", "Assignees", "CreatorId",
	"ParentId", "ParentCode", "Iteration.Id"};
	int			i;
	int			k;

	if (bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, attrs_used))
		return false;
	for (i = 0; i < ncols; i++)
	{
		if (cols[i].source == COLSRC_RAW)
			return false;
		if (cols[i].source != COLSRC_FIELD || cols[i].fallback != NIL)
			continue;
		for (k = 0; k < (int) lengthof(list_only); k++)
		{
			size_t		len = strlen(list_only[k]);

			if (strncmp(cols[i].field, list_only[k], len) == 0 &&
				(cols[i].field[len] == '\0' || cols[i].field[len] == '.'))
				return false;
		}
	}
	return true;
}

/*
 * codingGetForeignRelSize
 *		Read the options, find the columns used and estimate the rows: the
 *		resource's size (known from an earlier scan, else assumed) times
 *		the selectivity of all quals.
 */
static void
codingGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel,
						Oid foreigntableid)
{
	CodingPlanState *ps = palloc0(sizeof(CodingPlanState));
	Oid			userid = OidIsValid(baserel->userid) ? baserel->userid : GetUserId();
	Relation	rel;
	ListCell   *lc;
	bool		lookup_ok = false;

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

	/* issues: which columns need DescribeIssue, and may a lookup serve them */
	if (ps->tinfo->resource == CODING_RES_ISSUES)
	{
		CodingColumn *cols;
		int			ncols;

		rel = table_open(foreigntableid, NoLock);
		cols = coding_make_columns(rel, CODING_RES_ISSUES, ps->attrs_used, &ncols);
		table_close(rel, NoLock);
		ps->detail_used = detail_attrs(cols, ncols);
		lookup_ok = key_lookup_allowed(cols, ncols, ps->attrs_used);
	}
	ps->need_detail = ps->detail_used != NULL;

	if (lookup_ok)
	{
		AttrNumber	attno = get_attnum(foreigntableid, "code");

		if (coding_column_pushable(foreigntableid, CODING_RES_ISSUES, attno, "code"))
		{
			ps->key_allowed = true;
			ps->code_attno = attno;
		}
	}

	ps->remote_total = known_total(ps->conn, ps->tinfo);
	/* else what ANALYZE found (pg_class.reltuples; -1 if never analyzed) */
	if (ps->remote_total < 0 && baserel->tuples >= 0)
		ps->remote_total = baserel->tuples;
	if (ps->remote_total < 0)
		ps->remote_total = ps->tinfo->resource == CODING_RES_ISSUES ?
			DEFAULT_ISSUE_ROWS : DEFAULT_OTHER_ROWS;
	baserel->rows = clamp_row_est(ps->remote_total *
								  clauselist_selectivity(root,
														 baserel->baserestrictinfo,
														 0, JOIN_INNER, NULL));
	baserel->fdw_private = ps;
}

/*
 * const_code_count
 *		How many codes a constant key lookup among the quals names (-1 if
 *		there is none): code = 5 is one call, code = ANY('{1,2,3}') three.
 */
static int
const_code_count(CodingPlanState *ps, RelOptInfo *baserel, Oid relid)
{
	ListCell   *lc;

	if (!ps->key_allowed)
		return -1;
	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		CodingPushedItem *item = coding_classify_clause(relid, baserel->relid,
														CODING_RES_ISSUES,
														rinfo->clause);

		if (item == NULL || strcmp(item->column, "code") != 0)
			continue;
		if (item->op == CODING_OP_EQ)
			return 1;
		if (IsA(item->value, Const) && !((Const *) item->value)->constisnull)
			return ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(((Const *) item->value)->constvalue)),
								  ARR_DIMS(DatumGetArrayTypeP(((Const *) item->value)->constvalue)));
		return 10;				/* a parameter: a guess */
	}
	return -1;
}

/*
 * pushed_selectivity
 *		Selectivity of the quals Coding applies itself (other than code),
 *		which decides how many pages a scan reads.
 */
static Selectivity
pushed_selectivity(PlannerInfo *root, RelOptInfo *baserel, Oid relid,
				   CodingResource res)
{
	List	   *pushed = NIL;
	ListCell   *lc;

	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		CodingPushedItem *item = coding_classify_clause(relid, baserel->relid, res,
														rinfo->clause);

		if (item && strcmp(item->column, "code") != 0)
			pushed = lappend(pushed, rinfo);
	}
	return clauselist_selectivity(root, pushed, 0, JOIN_INNER, NULL);
}

/* ec_member_is_column: callback finding one column of the rel in an EC. */
static bool
ec_member_is_column(PlannerInfo *root, RelOptInfo *rel, EquivalenceClass *ec,
					EquivalenceMember *em, void *arg)
{
	Expr	   *expr = em->em_expr;

	if (expr && IsA(expr, RelabelType))
		expr = ((RelabelType *) expr)->arg;
	return expr && IsA(expr, Var) &&
		((Var *) expr)->varno == (int) rel->relid &&
		((Var *) expr)->varattno == *(AttrNumber *) arg &&
		((Var *) expr)->varlevelsup == 0;
}

/*
 * add_param_paths
 *		For joins on a column Coding can filter by, a parameterized path that
 *		asks Coding for the outer row's value only: one DescribeIssue per
 *		outer row for issues.code, one filtered listing per outer row for
 *		iteration_code, assignee_id, creator_id and parent_code.  Costed in
 *		calls per loop, so the planner picks it over listing everything when
 *		the outer side is small.
 */
static void
add_param_paths(PlannerInfo *root, RelOptInfo *baserel, Oid relid,
				CodingPlanState *ps)
{
	static const char *const join_columns[] = {
		"code", "iteration_code", "assignee_id", "creator_id", "parent_code"
	};
	int			c;

	if (ps->tinfo->resource != CODING_RES_ISSUES)
		return;
	for (c = 0; c < (int) lengthof(join_columns); c++)
	{
		const char *column = join_columns[c];
		bool		is_code = strcmp(column, "code") == 0;
		AttrNumber	attno = get_attnum(relid, column);
		List	   *clauses;
		ListCell   *lc;

		if (!coding_column_pushable(relid, CODING_RES_ISSUES, attno, column))
			continue;
		if (is_code && !ps->key_allowed)
			continue;
		clauses = generate_implied_equalities_for_column(root, baserel,
														 ec_member_is_column, &attno,
														 baserel->lateral_referencers);
		foreach(lc, baserel->joininfo)
		{
			RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);

			if (join_clause_is_movable_to(rinfo, baserel))
				clauses = lappend(clauses, rinfo);
		}

		foreach(lc, clauses)
		{
			RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
			CodingPushedItem *item;
			Relids		required_outer;
			ParamPathInfo *ppi;
			double		calls;

			item = coding_classify_clause(relid, baserel->relid, CODING_RES_ISSUES,
										  rinfo->clause);
			if (item == NULL || strcmp(item->column, column) != 0 ||
				item->op != CODING_OP_EQ)
				continue;
			required_outer = bms_union(rinfo->clause_relids, baserel->lateral_relids);
			required_outer = bms_del_member(required_outer, baserel->relid);
			if (bms_is_empty(required_outer))
				continue;
			ppi = get_baserel_parampathinfo(root, baserel, required_outer);
			if (is_code)
				calls = 1;		/* DescribeIssue carries the details too */
			else
				calls = Max(1, ceil(ppi->ppi_rows / ps->conn->page_size)) +
					(ps->need_detail ? ppi->ppi_rows : 0);
			add_path(baserel, (Path *)
					 create_foreignscan_path(root, baserel, NULL, ppi->ppi_rows,
											 CODING_CALL_COST,
											 calls * CODING_CALL_COST +
											 ppi->ppi_rows * cpu_tuple_cost,
											 NIL, required_outer, NULL,
											 list_make2(makeString(pstrdup("CODE")),
														makeInteger(0))));
		}
	}
}

/*
 * codingGetForeignPaths
 *		The scan, costed in API calls: pages of the (narrowed) listing plus a
 *		DescribeIssue per row with detail columns, or one call per code for
 *		a key lookup.  Also sorted paths when Coding can sort for ORDER BY,
 *		and parameterized paths for joins on issues.code.
 */
static void
codingGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel,
					  Oid foreigntableid)
{
	CodingPlanState *ps = (CodingPlanState *) baserel->fdw_private;
	CodingResource res = ps->tinfo->resource;
	int			ncodes = const_code_count(ps, baserel, foreigntableid);
	double		calls;
	double		remote_rows;
	Cost		total_cost;
	const char *sort_key = NULL;
	bool		sort_desc = false;

	if (ncodes >= 0)
	{
		calls = ncodes;
		remote_rows = ncodes;
	}
	else
	{
		remote_rows = clamp_row_est(ps->remote_total *
									pushed_selectivity(root, baserel, foreigntableid, res));
		calls = Max(1, ceil(remote_rows / ps->conn->page_size)) +
			(res == CODING_RES_MEMBERS ? 1 : 0) +
			(ps->need_detail ? baserel->rows : 0);
	}
	total_cost = calls * CODING_CALL_COST + remote_rows * cpu_tuple_cost;

	/* unordered: Coding's default order by code */
	add_path(baserel, (Path *)
			 create_foreignscan_path(root, baserel, NULL, baserel->rows,
									 CODING_CALL_COST, total_cost,
									 NIL, NULL, NULL,
									 list_make2(makeString(pstrdup("CODE")),
												makeInteger(0))));

	/* ORDER BY one sortable column: let Coding sort */
	if (list_length(root->query_pathkeys) == 1)
	{
		PathKey    *pk = linitial(root->query_pathkeys);
		ListCell   *lc;

		foreach(lc, pk->pk_eclass->ec_members)
		{
			EquivalenceMember *em = lfirst(lc);

			if (em->em_is_const || !bms_equal(em->em_relids, baserel->relids))
				continue;
			sort_key = coding_sort_key(foreigntableid, baserel->relid, res, em->em_expr);
			if (sort_key)
				break;
		}
		sort_desc = pk->pk_strategy == BTGreaterStrategyNumber;
		/* a key lookup returns its codes in order, nothing else */
		if (sort_key && (ncodes < 0 || strcmp(sort_key, "CODE") == 0))
			add_path(baserel, (Path *)
					 create_foreignscan_path(root, baserel, NULL, baserel->rows,
											 CODING_CALL_COST, total_cost + 1.0,
											 root->query_pathkeys, NULL, NULL,
											 list_make2(makeString(pstrdup(sort_key)),
														makeInteger(sort_desc ? 1 : 0))));
	}

	if (ncodes < 0)
		add_param_paths(root, baserel, foreigntableid, ps);
}

static bool reads_every_page(PlannerInfo *root, RelOptInfo *baserel,
							 ForeignPath *best_path);

/*
 * codingGetForeignPlan
 *		Build the ForeignScan.  Every qual stays a local qual.  The clauses
 *		that narrow the request become pushed items whose values go to
 *		fdw_exprs (so nested-loop parameters and stable expressions are
 *		evaluated at run time); when details are fetched, the quals that read
 *		list columns only follow them in fdw_exprs, so the scan can drop a
 *		row before paying a DescribeIssue call for it.
 */
static ForeignScan *
codingGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel,
					 Oid foreigntableid, ForeignPath *best_path,
					 List *tlist, List *scan_clauses, Plan *outer_plan)
{
	CodingPlanState *ps = (CodingPlanState *) baserel->fdw_private;
	CodingResource res = ps->tinfo->resource;
	List	   *attrs = NIL;
	List	   *items = NIL;
	List	   *values = NIL;
	List	   *list_quals = NIL;
	Bitmapset  *detail = ps->detail_used;
	ListCell   *lc;
	int			x = -1;

	while ((x = bms_next_member(ps->attrs_used, x)) >= 0)
		attrs = lappend_int(attrs, x);

	scan_clauses = extract_actual_clauses(scan_clauses, false);
	foreach(lc, scan_clauses)
	{
		Expr	   *clause = (Expr *) lfirst(lc);
		CodingPushedItem *item = coding_classify_clause(foreigntableid, baserel->relid,
														res, clause);

		if (item == NULL)
			continue;
		/* where DescribeIssue cannot give the columns, codes only say "none" */
		item->only_if_empty = strcmp(item->column, "code") == 0 && !ps->key_allowed;
		items = lappend(items, list_make5(makeString(item->column),
										  makeInteger(item->op),
										  makeInteger(item->value != NULL),
										  makeInteger((int) item->collation),
										  makeInteger(item->only_if_empty)));
		if (item->value)
			values = lappend(values, item->value);
	}

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

	return make_foreignscan(tlist, scan_clauses, baserel->relid,
							list_concat(values, list_quals),
							lappend(lappend(list_make5(attrs,
													   makeInteger(detail != NULL ? 1 : 0),
													   items,
													   makeInteger(list_length(values)),
													   linitial(best_path->fdw_private)),
											lsecond(best_path->fdw_private)),
									makeInteger(reads_every_page(root, baserel, best_path))),
							NIL, NIL, outer_plan);
}

/*
 * reads_every_page
 *		Whether the executor will surely ask for every page, so the next
 *		page can be requested while the current one is converted without
 *		risking a call nobody needs: a top-level query over this table
 *		alone, with no LIMIT and not read through a cursor (both give a
 *		tuple_fraction), no parameters (a rescan restarts) and no detail
 *		columns (their DescribeIssue calls run between pages); nor a
 *		subquery or volatile function (in the target list or the quals),
 *		which may call Coding between rows and so abandon the page asked
 *		for.  A client that stops reading a portal early can still waste
 *		one call.
 */
static bool
reads_every_page(PlannerInfo *root, RelOptInfo *baserel, ForeignPath *best_path)
{
	CodingPlanState *ps = (CodingPlanState *) baserel->fdw_private;

	return root->query_level == 1 &&
		root->tuple_fraction <= 0 &&
		bms_membership(root->all_baserels) == BMS_SINGLETON &&
		best_path->path.param_info == NULL &&
		!ps->need_detail &&
		!root->parse->hasSubLinks &&
		!contain_volatile_functions((Node *) root->parse->targetList) &&
		!contain_volatile_functions((Node *) extract_actual_clauses(baserel->baserestrictinfo, false));
}

/* contains_exec_param: a PARAM_EXEC (the outer row of a nested loop). */
static bool
contains_exec_param(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Param) && ((Param *) node)->paramkind == PARAM_EXEC)
		return true;
	return expression_tree_walker(node, contains_exec_param, context);
}

/*
 * create_scan_contexts
 *		The memory a scan (or ANALYZE's sampling) resets at its own pace:
 *		the request, the page, the row and the page asked for ahead.
 */
static void
create_scan_contexts(CodingScanState *ss, MemoryContext parent)
{
	ss->request_cxt = AllocSetContextCreate(parent, "coding_fdw request",
											ALLOCSET_SMALL_SIZES);
	ss->page_cxt = AllocSetContextCreate(parent, "coding_fdw page", ALLOCSET_DEFAULT_SIZES);
	ss->row_cxt = AllocSetContextCreate(parent, "coding_fdw row", ALLOCSET_DEFAULT_SIZES);
	ss->ahead_cxt = AllocSetContextCreate(parent, "coding_fdw read-ahead",
										  ALLOCSET_DEFAULT_SIZES);
}

/* delete_scan_contexts: the scan is over (the page asked for ahead goes first) */
static void
delete_scan_contexts(CodingScanState *ss)
{
	MemoryContextDelete(ss->ahead_cxt);
	MemoryContextDelete(ss->request_cxt);
	MemoryContextDelete(ss->page_cxt);
	MemoryContextDelete(ss->row_cxt);
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
	List	   *items = (List *) list_nth(plan->fdw_private, PRIV_ITEMS);
	int			nvalues = intVal(list_nth(plan->fdw_private, PRIV_NVALUES));
	Bitmapset  *wanted = NULL;
	ListCell   *lc;
	ListCell   *value_cell;

	node->fdw_state = ss;
	ss->tinfo = coding_get_table_info(RelationGetRelid(rel));
	ss->conn = coding_get_conn_info(GetForeignServerIdByRelId(RelationGetRelid(rel)),
									userid, RelationGetRelid(rel));
	ss->need_detail = intVal(list_nth(plan->fdw_private, PRIV_NEED_DETAIL)) != 0;
	ss->detail_chunk = CODING_DETAIL_CONCURRENCY;
	ss->sort_key = strVal(list_nth(plan->fdw_private, PRIV_SORT_KEY));
	ss->sort_desc = intVal(list_nth(plan->fdw_private, PRIV_SORT_DESC)) != 0;
	ss->read_ahead = intVal(list_nth(plan->fdw_private, PRIV_READ_AHEAD)) != 0;

	/* pushed items and their value expressions (first in fdw_exprs) */
	value_cell = list_head(plan->fdw_exprs);
	foreach(lc, items)
	{
		List	   *it = (List *) lfirst(lc);
		CodingPushedItem *item = palloc0(sizeof(CodingPushedItem));

		item->column = strVal(linitial(it));
		item->op = intVal(lsecond(it));
		item->collation = (Oid) intVal(lfourth(it));
		item->only_if_empty = intVal(list_nth(it, 4)) != 0;
		if (intVal(lthird(it)))
		{
			item->value = (Expr *) lfirst(value_cell);
			value_cell = lnext(plan->fdw_exprs, value_cell);
			ss->value_states = lappend(ss->value_states,
									   ExecInitExpr(item->value, (PlanState *) node));
			if (contains_exec_param((Node *) item->value, NULL))
				ss->values_need_outer = true;
		}
		ss->items = lappend(ss->items, item);
	}
	ss->list_qual = ExecInitQual(list_copy_tail(plan->fdw_exprs, nvalues),
								 (PlanState *) node);

	foreach(lc, attrs)
		wanted = bms_add_member(wanted, lfirst_int(lc));
	ss->cols = coding_make_columns(rel, ss->tinfo->resource, wanted, &ss->ncols);
	ss->conn->row_filter = row_filter(ss);

	create_scan_contexts(ss, estate->es_query_cxt);
	ss->page_number = 1;
	ss->project_id = -1;

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	require_project(ss->conn, RelationGetRelid(rel));
	coding_require_token(ss->conn);
}

/* code_cmp_desc: list_sort comparator, descending ints. */
static int
code_cmp_desc(const ListCell *a, const ListCell *b)
{
	return -list_int_cmp(a, b);
}

/*
 * prepare_request
 *		Evaluate the pushed values (again after a rescan: a nested loop's
 *		outer row may have changed them) and build the request.
 */
static void
prepare_request(ForeignScanState *node, CodingScanState *ss)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	int			n = list_length(ss->items);
	Datum	   *values = palloc0(sizeof(Datum) * Max(n, 1));
	bool	   *isnull = palloc0(sizeof(bool) * Max(n, 1));
	Oid		   *types = palloc0(sizeof(Oid) * Max(n, 1));
	MemoryContext old;
	ListCell   *lc;
	ListCell   *state_cell = list_head(ss->value_states);
	int			i = 0;

	MemoryContextReset(ss->request_cxt);
	old = MemoryContextSwitchTo(ss->request_cxt);
	foreach(lc, ss->items)
	{
		CodingPushedItem *item = lfirst(lc);

		if (item->value)
		{
			values[i] = ExecEvalExpr((ExprState *) lfirst(state_cell), econtext, &isnull[i]);
			types[i] = exprType((Node *) item->value);
			state_cell = lnext(ss->value_states, state_cell);
		}
		i++;
	}
	coding_build_request(&ss->request, ss->tinfo->resource, ss->tinfo->issue_type,
						 ss->items, values, isnull, types);
	if (ss->request.key_lookup)
	{
		list_sort(ss->request.codes, ss->sort_desc ? code_cmp_desc : list_int_cmp);
		ss->next_code = list_head(ss->request.codes);
	}
	MemoryContextSwitchTo(old);
	ss->request_ready = true;
}

/*
 * malformed
 *		Raise the "malformed response" error for an answer that does not
 *		have the documented shape.
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
 * describe_project
 *		DescribeProjectByName for the connection's project: the Project
 *		object, or the "project not found" error (Coding may answer without
 *		a Project instead of with ResourceNotFound).
 */
static cJSON *
describe_project(CodingConnInfo *conn, CodingCallStats *stats)
{
	cJSON	   *body = cJSON_CreateObject();
	cJSON	   *project;

	cJSON_AddStringToObject(body, "ProjectName", conn->project);
	project = cJSON_GetObjectItemCaseSensitive(coding_call(conn, "DescribeProjectByName",
														   body, stats),
											   "Project");
	if (!cJSON_IsObject(project))
	{
		CodingResult r = {0};

		/* absent or null: no such project; anything else is not an answer */
		r.errclass = project == NULL || cJSON_IsNull(project) ?
			CODING_ERR_NOT_FOUND : CODING_ERR_MALFORMED;
		r.transport_error = r.errclass == CODING_ERR_NOT_FOUND ?
			"the answer has no \"Project\"" : "the answer's \"Project\" is not an object";
		coding_report_error(conn, "DescribeProjectByName", &r, ERROR);
	}
	return project;
}

/*
 * fetch_project_id
 *		project_members needs the project's numeric Id.
 */
static void
fetch_project_id(CodingScanState *ss)
{
	cJSON	   *project = describe_project(ss->conn, &ss->stats);

	if (json_number(project, "Id", -1) <= 0)
		malformed(ss, "DescribeProjectByName", "the project has no numeric \"Id\"");
	ss->project_id = (int64) json_number(project, "Id", -1);
}

/*
 * list_body
 *		The body of the next page's list request: the table's resource, the
 *		pushed conditions and the sort.
 */
static cJSON *
list_body(CodingScanState *ss)
{
	cJSON	   *body = cJSON_CreateObject();
	cJSON	   *field;

	switch (ss->tinfo->resource)
	{
		case CODING_RES_ISSUES:
			cJSON_AddStringToObject(body, "ProjectName", ss->conn->project);
			cJSON_AddStringToObject(body, "IssueType", ss->request.issue_type);
			cJSON_AddNumberToObject(body, "PageNumber", ss->page_number);
			cJSON_AddNumberToObject(body, "PageSize", ss->conn->page_size);
			cJSON_AddStringToObject(body, "SortKey", ss->sort_key);
			cJSON_AddStringToObject(body, "SortValue", ss->sort_desc ? "DESC" : "ASC");
			cJSON_AddTrueToObject(body, "ShowSubIssues");
			if (cJSON_GetArraySize(ss->request.conditions) > 0)
				cJSON_AddItemReferenceToObject(body, "Conditions", ss->request.conditions);
			break;
		case CODING_RES_ITERATIONS:
			cJSON_AddStringToObject(body, "ProjectName", ss->conn->project);
			/* Offset is a 0-based page index (coding-api.md §2.3) */
			cJSON_AddNumberToObject(body, "Offset", ss->page_number - 1);
			cJSON_AddNumberToObject(body, "Limit", ss->conn->page_size);
			cJSON_ArrayForEach(field, ss->request.iteration_fields)
				cJSON_AddItemReferenceToObject(body, field->string, field);
			break;
		case CODING_RES_MEMBERS:
			cJSON_AddNumberToObject(body, "ProjectId", (double) ss->project_id);
			cJSON_AddNumberToObject(body, "PageNumber", ss->page_number);
			cJSON_AddNumberToObject(body, "PageSize", ss->conn->page_size);
			break;
	}
	return body;
}

/*
 * rows_path
 *		Where a list answer holds its rows: fetch_page reads them there, and
 *		row_filter tells the parser.
 */
#define ROWS_PATH_LEN 3

static const char *const *
rows_path(CodingResource res)
{
	static const char *const list_path[ROWS_PATH_LEN] = {"Response", "Data", "List"};
	static const char *const members_path[ROWS_PATH_LEN] = {"Response", "Data", "ProjectMembers"};

	return res == CODING_RES_MEMBERS ? members_path : list_path;
}

/* free_json_doc: the scan's memory is going away, and its parser with it */
static void
free_json_doc(void *arg)
{
	coding_json_doc_free((CodingJsonDoc *) arg);
}

/*
 * scan_json_doc
 *		A parser of the scan's own (json_fast.h), freed with the current
 *		memory context (the query's); NULL when out of memory, and rows are
 *		then built as cJSON nodes.
 */
static CodingJsonDoc *
scan_json_doc(void)
{
	CodingJsonDoc *doc = coding_json_doc_create();
	MemoryContextCallback *cb;

	if (doc == NULL)
		return NULL;
	cb = palloc(sizeof(MemoryContextCallback));
	cb->func = free_json_doc;
	cb->arg = doc;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
	return doc;
}

/*
 * row_filter
 *		The keys of a list row this scan reads, so the parser builds only
 *		those (a count(*) or a few columns skip most of each row): the first
 *		names of the columns' field paths and fallbacks, and the key an
 *		error names the row by.  NULL, to build rows whole, when raw shows
 *		the whole list object.
 *
 *		Unless details are merged into the rows (which needs them whole),
 *		the scan gets its own parser, so that its rows stay in simdjson's
 *		document as row views and conversion reads them from there: no
 *		cJSON node is built per value (json_fast.h).
 */
static const CodingJsonRowFilter *
row_filter(CodingScanState *ss)
{
	CodingJsonRowFilter *filter = palloc0(sizeof(CodingJsonRowFilter));
	const char **keys = palloc(sizeof(char *) * (2 * ss->ncols + 2));
	int			nkeys = 0;
	int			i;

	for (i = 0; i < ss->ncols; i++)
	{
		CodingColumn *col = &ss->cols[i];

		if (col->source == COLSRC_RAW)
			return NULL;
		if (col->source != COLSRC_FIELD)
			continue;
		if (col->path != NIL)
			keys[nkeys++] = linitial(col->path);
		if (col->fallback != NIL)
			keys[nkeys++] = linitial(col->fallback);
	}
	keys[nkeys++] = "Code";		/* issues, iterations */
	keys[nkeys++] = "Id";		/* members */
	if (!ss->need_detail)
		filter->doc = scan_json_doc();
	filter->path = rows_path(ss->tinfo->resource);
	filter->npath = ROWS_PATH_LEN;
	filter->keys = keys;
	filter->nkeys = nkeys;
	return filter;
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
	cJSON	   *resp;
	cJSON	   *data;
	cJSON	   *list;
	cJSON	   *item;
	int			count;

	MemoryContextReset(ss->page_cxt);
	ss->rows = NULL;
	ss->nrows = ss->pos = ss->described = 0;

	if (res == CODING_RES_MEMBERS && ss->project_id < 0)
		fetch_project_id(ss);	/* kept across pages and rescans */

	old = MemoryContextSwitchTo(ss->page_cxt);
	resp = coding_call(ss->conn, action, list_body(ss), &ss->stats);
	ss->pages++;

	data = cJSON_GetObjectItemCaseSensitive(resp, "Data");
	if (!cJSON_IsObject(data))
		malformed(ss, action, "the answer has no \"Data\" object");
	list = cJSON_GetObjectItemCaseSensitive(data, rows_path(res)[ROWS_PATH_LEN - 1]);
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

	/* an unfiltered first page tells the planner how big the table is */
	if (ss->page_number == 1 &&
		cJSON_GetArraySize(ss->request.conditions) == 0 &&
		cJSON_GetArraySize(ss->request.iteration_fields) == 0 &&
		strcmp(ss->request.issue_type, ss->tinfo->issue_type) == 0)
	{
		double		total = json_number(data, res == CODING_RES_ITERATIONS ?
										"TotalRow" : "TotalCount", -1);

		if (total >= 0)
			remember_total(ss->conn, ss->tinfo, total);
	}

	/*
	 * A short page is the last; so is the page the server says is last.
	 * "Short" by the page size the answer gives (Data.PageSize), where it
	 * gives a smaller one than asked for: a server that caps its pages
	 * would otherwise end the scan after its first page (the reference
	 * connector reads the page size from the answer too).
	 */
	{
		double		echoed = json_number(data, "PageSize", -1);

		if (echoed >= 1 && echoed < page_size)
			page_size = (int) echoed;
	}
	ss->last_page = count < page_size || count == 0;
	switch (res)
	{
		case CODING_RES_ISSUES:
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

	/* the next page is surely wanted: ask for it now, collect it later */
	MemoryContextReset(ss->ahead_cxt);
	if (ss->read_ahead && !ss->last_page)
		coding_call_prefetch(ss->conn, action, list_body(ss), &ss->stats, ss->ahead_cxt);

	ss->rows = palloc(sizeof(PageRow) * Max(count, 1));
	cJSON_ArrayForEach(item, list)
	{
		ss->rows[ss->nrows].item = ss->rows[ss->nrows].full = item;
		ss->nrows++;
	}
	MemoryContextSwitchTo(old);
}

static bool list_qual_passes(ForeignScanState *node, CodingScanState *ss,
							 cJSON *item);

/*
 * describe_issues
 *		DescribeIssue for n codes at once: concurrently, within the rate
 *		limit.  Returns each Issue object in order, NULL where Coding has no
 *		such issue (deleted since it was listed, or never there).  Any other
 *		failure raises.  Allocates in the current memory context.
 */
static cJSON **
describe_issues(CodingScanState *ss, double *codes, int n)
{
	CodingBatchItem *batch = palloc0(sizeof(CodingBatchItem) * Max(n, 1));
	cJSON	  **issues = palloc0(sizeof(cJSON *) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
	{
		batch[i].body = cJSON_CreateObject();
		cJSON_AddStringToObject(batch[i].body, "ProjectName", ss->conn->project);
		cJSON_AddNumberToObject(batch[i].body, "IssueCode", codes[i]);
	}
	coding_call_batch(ss->conn, "DescribeIssue", batch, n, CODING_DETAIL_CONCURRENCY,
					  &ss->stats);
	for (i = 0; i < n; i++)
	{
		CodingResult *r = &batch[i].result;

		/* a missing issue is no row; a missing project is still an error */
		if (r->errclass == CODING_ERR_NOT_FOUND &&
			!(r->message && strstr(r->message, "project")))
			continue;
		if (r->errclass != CODING_OK)
			coding_report_error(ss->conn, "DescribeIssue", r, ERROR);
		issues[i] = cJSON_GetObjectItemCaseSensitive(r->response, "Issue");
		if (!cJSON_IsObject(issues[i]))
			malformed(ss, "DescribeIssue", "the answer has no \"Issue\" object");

		/*
		 * The issue must be the one asked for: a key lookup that dropped a
		 * row because its Code came back broken would report the issue as
		 * deleted (and the sync would delete it).
		 */
		{
			cJSON	   *code = cJSON_GetObjectItemCaseSensitive(issues[i], "Code");

			if (!cJSON_IsNumber(code) || code->valuedouble != codes[i])
				malformed(ss, "DescribeIssue", "the answer's \"Code\" is not the issue asked for");
		}
	}
	return issues;
}

/*
 * merge_detail
 *		The list object with DescribeIssue's extra fields added (the list's
 *		own fields win).
 */
static cJSON *
merge_detail(cJSON *item, cJSON *issue)
{
	cJSON	   *merged = cJSON_Duplicate(item, true);
	cJSON	   *field;

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
 * fetch_page_details
 *		For a page whose query reads detail columns: drop the rows the quals
 *		on list columns reject, then describe the next ones in one
 *		concurrent batch.  A batch starts at CODING_DETAIL_CONCURRENCY rows
 *		and doubles up to the page: a LIMIT or a cursor that stops early
 *		(the scan is not told) pays for at most about twice the rows it
 *		read, not for the page.  Memory stays bounded by one page.
 */
static void
fetch_page_details(ForeignScanState *node, CodingScanState *ss)
{
	int			chunk = ss->detail_chunk;
	double	   *codes = MemoryContextAlloc(ss->page_cxt, sizeof(double) * Max(chunk, 1));
	int		   *which = MemoryContextAlloc(ss->page_cxt, sizeof(int) * Max(chunk, 1));
	cJSON	  **issues;
	MemoryContext old;
	int			n = 0;
	int			i;

	ss->detail_chunk = Min(chunk * 2, Max(ss->conn->page_size, CODING_DETAIL_CONCURRENCY));
	for (i = ss->described; i < ss->nrows && n < chunk; i++)
	{
		cJSON	   *code = cJSON_GetObjectItemCaseSensitive(ss->rows[i].item, "Code");

		MemoryContextReset(ss->row_cxt);
		old = MemoryContextSwitchTo(ss->row_cxt);
		if (!list_qual_passes(node, ss, ss->rows[i].item))
		{
			ss->rows[i].full = NULL;
			ss->skipped_details++;
		}
		else if (!cJSON_IsNumber(code))
			malformed(ss, "DescribeIssueListWithPage", "an issue has no numeric \"Code\"");
		else
		{
			codes[n] = code->valuedouble;
			which[n++] = i;
		}
		MemoryContextSwitchTo(old);
	}
	ss->described = i;
	MemoryContextReset(ss->row_cxt);

	old = MemoryContextSwitchTo(ss->page_cxt);
	issues = describe_issues(ss, codes, n);
	for (i = 0; i < n; i++)
		if (issues[i])
			ss->rows[which[i]].full = merge_detail(ss->rows[which[i]].item, issues[i]);
	MemoryContextSwitchTo(old);
}

/*
 * fetch_key_chunk
 *		Key lookup: describe the next page_size requested codes at once; the
 *		rows are the issues that exist and belong to the table's issue type,
 *		in the order of the codes.
 */
static void
fetch_key_chunk(CodingScanState *ss)
{
	int			chunk = Max(ss->conn->page_size, 1);
	double	   *codes;
	cJSON	  **issues;
	MemoryContext old;
	int			n = 0;
	int			i;

	MemoryContextReset(ss->page_cxt);
	old = MemoryContextSwitchTo(ss->page_cxt);
	codes = palloc(sizeof(double) * chunk);
	while (ss->next_code != NULL && n < chunk)
	{
		codes[n++] = lfirst_int(ss->next_code);
		ss->next_code = lnext(ss->request.codes, ss->next_code);
	}
	issues = describe_issues(ss, codes, n);
	ss->rows = palloc(sizeof(PageRow) * Max(n, 1));
	ss->nrows = ss->pos = ss->described = 0;
	for (i = 0; i < n; i++)
	{
		cJSON	   *type;

		if (issues[i] == NULL)
			continue;
		type = cJSON_GetObjectItemCaseSensitive(issues[i], "Type");
		if (strcmp(ss->tinfo->issue_type, "ALL") != 0 &&
			!(cJSON_IsString(type) && strcmp(type->valuestring, ss->tinfo->issue_type) == 0))
			continue;			/* the table lists one type only */
		ss->rows[ss->nrows].item = ss->rows[ss->nrows].full = issues[i];
		ss->nrows++;
	}
	MemoryContextSwitchTo(old);
}

/*
 * more_rows
 *		Whether another page or chunk of codes remains to be fetched.
 */
static bool
more_rows(CodingScanState *ss)
{
	if (ss->request.key_lookup)
		return ss->next_code != NULL;
	return !(ss->last_page && ss->page_number > 1);
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
 *		Return the next row of the current page, fetching the next page (or
 *		chunk of looked-up codes) when it is used up.  With detail columns,
 *		a page's rows are described in concurrent batches as they are
 *		reached, except those the quals on list columns already reject.
 */
static TupleTableSlot *
codingIterateForeignScan(ForeignScanState *node)
{
	CodingScanState *ss = (CodingScanState *) node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	MemoryContext old;
	PageRow    *row;

	if (!ss->request_ready)
		prepare_request(node, ss);
	if (ss->request.empty)
		return ExecClearTuple(slot);

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		/* let the page asked for ahead stream in while rows are converted */
		if (ss->read_ahead && (ss->pos & 63) == 63)
			coding_call_poll();
		if (ss->pos < ss->nrows)
		{
			if (ss->need_detail && !ss->request.key_lookup && ss->pos >= ss->described)
				fetch_page_details(node, ss);
			row = &ss->rows[ss->pos++];
			if (row->full != NULL)
				break;
			continue;
		}
		if (!more_rows(ss))
		{
			/* done: the parser's buffers (a page's size times ~3) go now */
			if (ss->conn->row_filter && ss->conn->row_filter->doc)
				coding_json_doc_release(ss->conn->row_filter->doc);
			return ExecClearTuple(slot);
		}
		if (ss->request.key_lookup)
			fetch_key_chunk(ss);
		else
			fetch_page(ss);	/* details are fetched as its rows are reached */
	}

	MemoryContextReset(ss->row_cxt);
	old = MemoryContextSwitchTo(ss->row_cxt);
	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	coding_row_to_values(ss->cols, ss->ncols, row->full, row->item, ss->conn,
						 ss->tinfo->resource, slot->tts_values, slot->tts_isnull);
	MemoryContextSwitchTo(old);
	return ExecStoreVirtualTuple(slot);
}

/*
 * codingReScanForeignScan
 *		Start again: the inner side of a nested loop, whose pushed values may
 *		come from the outer row, so the request is rebuilt.
 */
static void
codingReScanForeignScan(ForeignScanState *node)
{
	CodingScanState *ss = (CodingScanState *) node->fdw_state;

	MemoryContextReset(ss->page_cxt);
	MemoryContextReset(ss->row_cxt);
	MemoryContextReset(ss->ahead_cxt);	/* abandons a page asked for ahead */
	ss->rows = NULL;
	ss->nrows = ss->pos = ss->described = 0;
	ss->page_number = 1;
	ss->last_page = false;
	ss->request_ready = false;
	ss->detail_chunk = CODING_DETAIL_CONCURRENCY;
}

/* codingEndForeignScan: free the request, page and row memory. */
static void
codingEndForeignScan(ForeignScanState *node)
{
	CodingScanState *ss = (CodingScanState *) node->fdw_state;

	if (ss == NULL)
		return;
	coding_report_jsonb_caches(ss->cols, ss->ncols);
	delete_scan_contexts(ss);
}

/*
 * sample_page
 *		Fetch one page of the listing for ANALYZE and add its rows to the
 *		sample: the first targrows rows, then each later row replaces a
 *		random one with probability targrows / rows seen (a reservoir, so
 *		every row seen is equally likely to stay).
 */
static void
sample_page(CodingScanState *ss, Relation rel, HeapTuple *rows, int targrows,
			int *numrows, double *seen)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	Datum	   *values = palloc(sizeof(Datum) * Max(tupdesc->natts, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(tupdesc->natts, 1));
	int			i;

	vacuum_delay_point();
	fetch_page(ss);
	for (i = 0; i < ss->nrows; i++)
	{
		MemoryContext old;
		HeapTuple	tuple;
		int			k;

		MemoryContextReset(ss->row_cxt);
		old = MemoryContextSwitchTo(ss->row_cxt);
		memset(nulls, true, sizeof(bool) * tupdesc->natts);
		coding_row_to_values(ss->cols, ss->ncols, ss->rows[i].item, ss->rows[i].item,
							 ss->conn, ss->tinfo->resource, values, nulls);
		MemoryContextSwitchTo(old);
		k = *numrows < targrows ? *numrows :
			(int) pg_prng_uint64_range(&pg_global_prng_state, 0, (uint64) *seen);
		*seen += 1;
		if (k >= targrows)
			continue;
		tuple = heap_form_tuple(tupdesc, values, nulls);	/* in ANALYZE's memory */
		if (k < *numrows)
			heap_freetuple(rows[k]);
		else
			(*numrows)++;
		rows[k] = tuple;
	}
	MemoryContextReset(ss->row_cxt);
	pfree(values);
	pfree(nulls);
}

/*
 * coding_acquire_sample_rows
 *		ANALYZE's sample: whole pages of the listing, as many as targrows
 *		rows fill (all of them for a table of up to targrows rows), the
 *		first page and the rest drawn at random; the row count is the
 *		listing's own TotalCount.  Detail-only columns are NULL in the
 *		sample: describing each sampled issue would cost a call per row.
 */
static int
coding_acquire_sample_rows(Relation rel, int elevel, HeapTuple *rows, int targrows,
						   double *totalrows, double *totaldeadrows)
{
	Oid			relid = RelationGetRelid(rel);
	CodingScanState *ss = palloc0(sizeof(CodingScanState));
	Bitmapset  *whole_row = bms_make_singleton(0 - FirstLowInvalidHeapAttributeNumber);
	int			numrows = 0;
	int			pages_read = 0;
	int			wanted_pages;
	double		seen = 0;
	double		total;
	double		total_pages = -1;

	ss->tinfo = coding_get_table_info(relid);
	ss->conn = coding_get_conn_info(GetForeignServerIdByRelId(relid), GetUserId(), relid);
	require_project(ss->conn, relid);
	coding_require_token(ss->conn);
	ss->cols = coding_make_columns(rel, ss->tinfo->resource, whole_row, &ss->ncols);
	ss->conn->row_filter = row_filter(ss);
	ss->sort_key = "CODE";
	create_scan_contexts(ss, CurrentMemoryContext);
	ss->project_id = -1;
	coding_build_request(&ss->request, ss->tinfo->resource, ss->tinfo->issue_type,
						 NIL, NULL, NULL, NULL);

	/* the first page, which also tells the total */
	ss->page_number = 1;
	sample_page(ss, rel, rows, targrows, &numrows, &seen);
	pages_read++;
	total = known_total(ss->conn, ss->tinfo);
	wanted_pages = (int) Max(1, ceil((double) targrows / ss->conn->page_size));
	if (total >= 0)
		total_pages = ceil(total / ss->conn->page_size);

	if (!ss->last_page && (total_pages < 0 || total_pages <= wanted_pages))
	{
		/* a small table (or no total): read on, up to the pages wanted */
		while (!ss->last_page && pages_read < wanted_pages)
		{
			sample_page(ss, rel, rows, targrows, &numrows, &seen);
			pages_read++;
		}
	}
	else if (!ss->last_page)
	{
		/* wanted_pages - 1 of pages 2..total_pages, each equally likely */
		double		left = total_pages - 1;
		int			needed = wanted_pages - 1;
		int			page;

		for (page = 2; page <= (int) total_pages && needed > 0; page++, left--)
		{
			if (pg_prng_double(&pg_global_prng_state) * left >= needed)
				continue;
			ss->page_number = page;
			sample_page(ss, rel, rows, targrows, &numrows, &seen);
			pages_read++;
			needed--;
		}
	}

	*totalrows = total >= 0 ? total : seen;
	*totaldeadrows = 0;
	ereport(elevel,
			(errmsg("\"%s\": %d rows sampled of %.0f, from %d of %.0f pages of %d (%lld Coding calls)",
					RelationGetRelationName(rel), numrows, *totalrows, pages_read,
					total_pages >= 0 ? total_pages : pages_read, ss->conn->page_size,
					(long long) ss->stats.calls)));
	delete_scan_contexts(ss);
	return numrows;
}

/*
 * codingAnalyzeForeignTable
 *		ANALYZE samples the listing (coding_acquire_sample_rows).  How many
 *		pages the listing has is known only from its first page.
 */
static bool
codingAnalyzeForeignTable(Relation relation, AcquireSampleRowsFunc *func,
						  BlockNumber *totalpages)
{
	*func = coding_acquire_sample_rows;
	*totalpages = 1;
	return true;
}

/* pushes_code: whether a pushed item looks issues up by code. */
static bool
pushes_code(List *items)
{
	ListCell   *lc;

	foreach(lc, items)
		if (strcmp(((CodingPushedItem *) lfirst(lc))->column, "code") == 0)
			return true;
	return false;
}

/*
 * codingExplainForeignScan
 *		VERBOSE shows the Coding request (with the values pushed, when they
 *		are known before the scan runs); ANALYZE the calls made.  Never the
 *		token.
 */
static void
codingExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	CodingScanState *ss = (CodingScanState *) node->fdw_state;
	StringInfoData buf;
	ListCell   *lc;

	if (!es->verbose)
		goto analyze;

	if (!ss->request_ready && !ss->values_need_outer)
		prepare_request(node, ss);
	if (ss->items != NIL)
	{
		/*
		 * The clauses the request carries; before the outer row's values
		 * are known, those it may carry.
		 */
		initStringInfo(&buf);
		foreach(lc, ss->items)
		{
			CodingPushedItem *item = lfirst(lc);

			if (ss->request_ready && !bms_is_member(foreach_current_index(lc), ss->request.sent))
				continue;
			appendStringInfo(&buf, "%s%s %s", buf.len ? ", " : "", item->column,
							 coding_op_name(item->op));
		}
		if (buf.len > 0)
			ExplainPropertyText("Coding pushed", buf.data, es);
	}

	initStringInfo(&buf);
	if (ss->request_ready && ss->request.key_lookup)
		appendStringInfoString(&buf, ss->request.description.data);
	else if (!ss->request_ready && pushes_code(ss->items))
		appendStringInfoString(&buf, "DescribeIssue IssueCode from the outer row");
	else
	{
		appendStringInfoString(&buf, list_actions[ss->tinfo->resource]);
		switch (ss->tinfo->resource)
		{
			case CODING_RES_ISSUES:
				appendStringInfo(&buf, " ProjectName=%s", ss->conn->project);
				if (ss->request_ready)
					appendStringInfo(&buf, " %s", ss->request.description.data);
				else
					appendStringInfoString(&buf, " (conditions from the outer row)");
				appendStringInfo(&buf, " SortKey=%s SortValue=%s PageSize=%d",
								 ss->sort_key, ss->sort_desc ? "DESC" : "ASC",
								 ss->conn->page_size);
				break;
			case CODING_RES_ITERATIONS:
				appendStringInfo(&buf, " ProjectName=%s", ss->conn->project);
				if (ss->request_ready && ss->request.description.len > 0)
					appendStringInfo(&buf, " %s", ss->request.description.data);
				appendStringInfo(&buf, " Limit=%d", ss->conn->page_size);
				break;
			case CODING_RES_MEMBERS:
				appendStringInfo(&buf, " (ProjectId of %s) PageSize=%d",
								 ss->conn->project, ss->conn->page_size);
				break;
		}
	}
	ExplainPropertyText("Coding request", buf.data, es);
	ExplainPropertyText("Coding details",
						!ss->need_detail ? "none" :
						(ss->request_ready ? ss->request.key_lookup : pushes_code(ss->items)) ?
						"in DescribeIssue" :
						ss->list_qual ? "DescribeIssue per row passing the list filter" :
						"DescribeIssue per row", es);

analyze:
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
	(void) describe_project(conn, NULL);

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
	routine->AnalyzeForeignTable = codingAnalyzeForeignTable;
	PG_RETURN_POINTER(routine);
}
