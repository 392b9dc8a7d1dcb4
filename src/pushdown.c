/*-------------------------------------------------------------------------
 * pushdown.c
 *		WHERE clauses into Coding's request: IssueType, Conditions, the
 *		iteration filters and key lookups by issue code.
 *
 * Planning decides which clauses can narrow the request ("pushed items":
 * a column, an operator and the expression giving the value); the values
 * are evaluated when the scan starts, so constants, stable expressions
 * such as now() - interval '7 days', prepared-statement parameters and the
 * outer row of a nested loop all work.  Every clause is still checked
 * locally: a pushed item only has to return a superset of the matching
 * rows, which is what Coding's day-granular dates and fuzzy KEYWORD give.
 *-------------------------------------------------------------------------
 */
#include "coding_fdw.h"

#include "access/sysattr.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "catalog/pg_collation.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

/* GUC: push clauses into Coding's request at all. */
bool		coding_enable_pushdown = true;

/* How a column narrows the request. */
typedef enum PushKind
{
	PK_ISSUE_TYPE,				/* IssueType */
	PK_LIST,					/* a Conditions key with comma-separated values */
	PK_DATE,					/* a Conditions date range */
	PK_KEYWORD,					/* Conditions KEYWORD from LIKE/ILIKE/= */
	PK_LABEL,					/* Conditions LABEL from labels @> */
	PK_CODE,					/* DescribeIssue key lookup */
	PK_ITER_STATUS,				/* DescribeIterationList Status[] */
	PK_ITER_ASSIGNEE,			/* DescribeIterationList Assignee[] */
	PK_ITER_KEYWORDS,			/* DescribeIterationList Keywords */
	PK_ITER_START,				/* DescribeIterationList StartDate */
	PK_ITER_END					/* DescribeIterationList EndDate */
} PushKind;

typedef struct PushableColumn
{
	CodingResource res;
	const char *column;
	PushKind	kind;
	const char *key;			/* Conditions Key */
	bool		numeric;		/* values must be integers */
	bool		null_ok;		/* IS NULL becomes ConstValue UNSPECIFIC */
	const char *const *closed_set;	/* all values, if known: <> pushable */
	const char *const *accepted;	/* the only values Coding accepts, if any */
} PushableColumn;

/* Columns whose values form a closed set: <> and NOT IN become the rest. */
static const char *const status_types[] = {"TODO", "PROCESSING", "COMPLETED", NULL};
static const char *const iteration_statuses[] = {"WAIT_PROCESS", "PROCESSING", "COMPLETED", NULL};
static const char *const priorities[] = {"0", "1", "2", "3", NULL};

static const PushableColumn pushable[] = {
	{CODING_RES_ISSUES, "type", PK_ISSUE_TYPE, NULL, false, false},
	{CODING_RES_ISSUES, "issue_status_type", PK_LIST, "STATUS_TYPE", false, false, status_types, status_types},
	{CODING_RES_ISSUES, "issue_status_name", PK_LIST, "STATUS", false, false},
	{CODING_RES_ISSUES, "issue_status_id", PK_LIST, "STATUS", true, false},
	/* not IS NULL: UNSPECIFIC also needs Assignees empty, a narrower test */
	{CODING_RES_ISSUES, "assignee_id", PK_LIST, "ASSIGNEE", true, false},
	{CODING_RES_ISSUES, "creator_id", PK_LIST, "CREATOR", true, false},
	{CODING_RES_ISSUES, "priority", PK_LIST, "PRIORITY", true, true, NULL, priorities},
	{CODING_RES_ISSUES, "iteration_code", PK_LIST, "ITERATION", true, true},
	{CODING_RES_ISSUES, "parent_code", PK_LIST, "PARENT", true, true},
	{CODING_RES_ISSUES, "issue_type_id", PK_LIST, "ISSUE_TYPE", true, false},
	{CODING_RES_ISSUES, "labels", PK_LABEL, "LABEL", false, false},
	{CODING_RES_ISSUES, "created_at", PK_DATE, "CREATED_AT", false, false},
	{CODING_RES_ISSUES, "updated_at", PK_DATE, "UPDATED_AT", false, false},
	{CODING_RES_ISSUES, "due_date", PK_DATE, "DUE_DATE", false, true},
	{CODING_RES_ISSUES, "start_date", PK_DATE, "START_DATE", false, true},
	{CODING_RES_ISSUES, "name", PK_KEYWORD, "KEYWORD", false, false},
	{CODING_RES_ISSUES, "code", PK_CODE, NULL, true, false},
	{CODING_RES_ITERATIONS, "status", PK_ITER_STATUS, NULL, false, false, iteration_statuses,
	iteration_statuses},
	{CODING_RES_ITERATIONS, "assignee_id", PK_ITER_ASSIGNEE, NULL, true, false},
	{CODING_RES_ITERATIONS, "name", PK_ITER_KEYWORDS, NULL, false, false},
	{CODING_RES_ITERATIONS, "start_at", PK_ITER_START, NULL, false, false},
	{CODING_RES_ITERATIONS, "end_at", PK_ITER_END, NULL, false, false},
};

static const char *const op_names[] = {"=", "= ANY", "<", "<=", ">", ">=",
"IS NULL", "LIKE", "ILIKE", "@>", "<>", "<> ALL"};


/*
 * find_pushable
 *		The pushdown rule of a column, if it is a known column of the
 *		resource with its documented type and no "field" option of its own.
 */
static const PushableColumn *
find_pushable(Oid relid, CodingResource res, AttrNumber attnum)
{
	char	   *colname = get_attname(relid, attnum, true);
	const CodingKnownColumn *known;
	int			nknown;
	int			i;

	if (colname == NULL || coding_column_field_option(relid, attnum) != NULL)
		return NULL;
	known = coding_known_columns(res, &nknown);
	for (i = 0; i < nknown; i++)
	{
		if (strcmp(known[i].name, colname) != 0)
			continue;
		/* the type IMPORT gives it: another type may mean another value */
		if (strcmp(format_type_be(get_atttype(relid, attnum)),
				   strcmp(known[i].type, "timestamptz") == 0 ?
				   "timestamp with time zone" : known[i].type) != 0)
			return NULL;
		break;
	}
	if (i == nknown)
		return NULL;
	for (i = 0; i < (int) lengthof(pushable); i++)
		if (pushable[i].res == res && strcmp(pushable[i].column, colname) == 0)
			return &pushable[i];
	return NULL;
}

/* column_var: the Var of the scanned relation under a RelabelType, if any. */
static Var *
column_var(Node *node, Index relid)
{
	if (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	if (node && IsA(node, Var) &&
		((Var *) node)->varno == (int) relid &&
		((Var *) node)->varlevelsup == 0 &&
		((Var *) node)->varattno > 0)
		return (Var *) node;
	return NULL;
}

/*
 * usable_value
 *		An expression that can be evaluated once when the scan starts: no
 *		column of the scanned relation, nothing volatile, no subquery.
 *		Columns of other relations (a nested loop's outer side) become
 *		parameters.
 */
static bool
usable_value(Node *expr, Index relid)
{
	return !bms_is_member(relid, pull_varnos(NULL, expr)) &&
		!contain_volatile_functions(expr) &&
		!contain_subplans(expr) &&
		!contain_agg_clause(expr) &&
		!expression_returns_set(expr);
}

/* operator_op: our operator code for a built-in operator name. */
static int
operator_op(Oid opno, bool commuted)
{
	char	   *name;

	if (opno >= FirstNormalObjectId)
		return -1;				/* a user-defined operator may mean anything */
	name = get_opname(opno);
	if (name == NULL)
		return -1;
	if (strcmp(name, "=") == 0)
		return CODING_OP_EQ;
	if (strcmp(name, "<>") == 0)
		return CODING_OP_NE;
	if (strcmp(name, "<") == 0)
		return commuted ? CODING_OP_GT : CODING_OP_LT;
	if (strcmp(name, "<=") == 0)
		return commuted ? CODING_OP_GE : CODING_OP_LE;
	if (strcmp(name, ">") == 0)
		return commuted ? CODING_OP_LT : CODING_OP_GT;
	if (strcmp(name, ">=") == 0)
		return commuted ? CODING_OP_LE : CODING_OP_GE;
	if (!commuted && strcmp(name, "~~") == 0)
		return CODING_OP_LIKE;
	if (!commuted && strcmp(name, "~~*") == 0)
		return CODING_OP_ILIKE;
	if (!commuted && strcmp(name, "@>") == 0)
		return CODING_OP_CONTAINS;
	return -1;
}

/* op_fits: whether a column's pushdown kind accepts an operator. */
static bool
op_fits(const PushableColumn *pc, int op)
{
	if (op == CODING_OP_NE || op == CODING_OP_NOT_ANY)
		return pc->closed_set != NULL;
	switch (pc->kind)
	{
		case PK_ISSUE_TYPE:
			return op == CODING_OP_EQ;
		case PK_LIST:
		case PK_CODE:
		case PK_ITER_STATUS:
		case PK_ITER_ASSIGNEE:
			return op == CODING_OP_EQ || op == CODING_OP_ANY ||
				(op == CODING_OP_NULL && pc->null_ok);
		case PK_DATE:
			return op == CODING_OP_EQ || op == CODING_OP_LT || op == CODING_OP_LE ||
				op == CODING_OP_GT || op == CODING_OP_GE ||
				(op == CODING_OP_NULL && pc->null_ok);
		case PK_KEYWORD:
		case PK_ITER_KEYWORDS:
			return op == CODING_OP_EQ || op == CODING_OP_LIKE || op == CODING_OP_ILIKE;
		case PK_LABEL:
			return op == CODING_OP_CONTAINS;
		case PK_ITER_START:
			return op == CODING_OP_GT || op == CODING_OP_GE;
		case PK_ITER_END:
			return op == CODING_OP_LT || op == CODING_OP_LE;
	}
	return false;
}

/*
 * coding_classify_clause
 *		If "clause" can narrow the request, return its pushed item
 *		(column, op, value expression); else NULL.
 */
CodingPushedItem *
coding_classify_clause(Oid relid, Index scanrelid, CodingResource res, Expr *clause)
{
	Var		   *var = NULL;
	Node	   *value = NULL;
	int			op = -1;
	const PushableColumn *pc;
	CodingPushedItem *item;
	Oid			collation;

	if (!coding_enable_pushdown)
		return NULL;

	if (IsA(clause, OpExpr) && list_length(((OpExpr *) clause)->args) == 2)
	{
		OpExpr	   *opexpr = (OpExpr *) clause;
		Node	   *left = linitial(opexpr->args);
		Node	   *right = lsecond(opexpr->args);

		if ((var = column_var(left, scanrelid)) != NULL)
		{
			value = right;
			op = operator_op(opexpr->opno, false);
		}
		else if ((var = column_var(right, scanrelid)) != NULL)
		{
			value = left;
			op = operator_op(opexpr->opno, true);
		}
	}
	else if (IsA(clause, ScalarArrayOpExpr))
	{
		ScalarArrayOpExpr *saop = (ScalarArrayOpExpr *) clause;

		if (list_length(saop->args) == 2 &&
			(var = column_var(linitial(saop->args), scanrelid)) != NULL)
		{
			int			elem_op = operator_op(saop->opno, false);

			value = lsecond(saop->args);
			if (saop->useOr && elem_op == CODING_OP_EQ)
				op = CODING_OP_ANY;
			else if (!saop->useOr && elem_op == CODING_OP_NE)
				op = CODING_OP_NOT_ANY;		/* NOT IN (...) */
		}
	}
	else if (IsA(clause, NullTest))
	{
		NullTest   *nt = (NullTest *) clause;

		if (nt->nulltesttype == IS_NULL && !nt->argisrow &&
			(var = column_var((Node *) nt->arg, scanrelid)) != NULL)
			op = CODING_OP_NULL;
	}

	if (var == NULL || op < 0)
		return NULL;
	if (value != NULL && !usable_value(value, scanrelid))
		return NULL;
	/* a case- or accent-blind comparison: Coding would compare exactly */
	collation = exprInputCollation((Node *) clause);
	if (OidIsValid(collation) && !get_collation_isdeterministic(collation))
		return NULL;
	pc = find_pushable(relid, res, var->varattno);
	if (pc == NULL || !op_fits(pc, op))
		return NULL;

	item = palloc0(sizeof(CodingPushedItem));
	item->column = pstrdup(pc->column);
	item->op = op;
	item->value = (Expr *) value;
	item->collation = OidIsValid(collation) ? collation : DEFAULT_COLLATION_OID;
	return item;
}

/*
 * coding_sort_key
 *		Coding's SortKey for an ORDER BY expression, or NULL.  Only columns
 *		Coding always fills (so no NULL ordering question arises) and that
 *		sort the same way in PostgreSQL: code, created_at, updated_at.
 */
const char *
coding_sort_key(Oid relid, Index scanrelid, CodingResource res, Expr *expr)
{
	Var		   *var = column_var((Node *) expr, scanrelid);
	const PushableColumn *pc;

	if (!coding_enable_pushdown || res != CODING_RES_ISSUES || var == NULL)
		return NULL;
	pc = find_pushable(relid, res, var->varattno);
	if (pc == NULL)
		return NULL;
	if (strcmp(pc->column, "code") == 0)
		return "CODE";
	if (strcmp(pc->column, "created_at") == 0)
		return "CREATED_AT";
	if (strcmp(pc->column, "updated_at") == 0)
		return "UPDATED_AT";
	return NULL;
}

/*
 * coding_column_pushable
 *		Whether attribute attnum is the known, pushable column "column" of
 *		the resource (its own name, type and no "field" option).
 */
bool
coding_column_pushable(Oid relid, CodingResource res, AttrNumber attnum,
					   const char *column)
{
	const PushableColumn *pc;

	if (!coding_enable_pushdown || attnum == InvalidAttrNumber)
		return false;
	pc = find_pushable(relid, res, attnum);
	return pc != NULL && strcmp(pc->column, column) == 0;
}

/* coding_op_name: an operator's SQL spelling, for EXPLAIN. */
const char *
coding_op_name(int op)
{
	return op_names[op];
}

/* ---------------------------------------------------------------------
 * Run time: evaluated values -> request
 * ---------------------------------------------------------------------
 */

/* datum_text: a value's text through its type's output function. */
static char *
datum_text(Datum d, Oid type)
{
	Oid			out;
	bool		varlena;

	getTypeOutputInfo(type, &out, &varlena);
	return OidOutputFunctionCall(out, d);
}

/* is_integer_text: digits with an optional minus sign. */
static bool
is_integer_text(const char *s)
{
	if (*s == '-')
		s++;
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char) *s))
			return false;
	return true;
}

/*
 * sendable_text
 *		Whether Coding reads a text value as itself in a comma-separated
 *		list: not empty, no comma (it would split the list), no leading or
 *		trailing space (Coding trims each value: " x" would find "x").
 */
static bool
sendable_text(const char *t)
{
	size_t		len = strlen(t);

	return len > 0 && strchr(t, ',') == NULL &&
		!isspace((unsigned char) t[0]) && !isspace((unsigned char) t[len - 1]);
}

/* string_in: whether s is one of a NULL-terminated list. */
static bool
string_in(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

/*
 * value_texts
 *		The values of an "=" or "= ANY" item as text; NULL elements are
 *		dropped (they match nothing).  Returns false if a value cannot be
 *		sent: not an integer where one is needed, not sendable_text, or
 *		outside the set of values Coding accepts for the column.
 */
static bool
value_texts(Datum d, Oid type, int op, const PushableColumn *pc, List **texts)
{
	bool		numeric = pc->numeric;

	*texts = NIL;
	if (op == CODING_OP_ANY || op == CODING_OP_NOT_ANY)
	{
		ArrayType  *arr = DatumGetArrayTypeP(d);
		Oid			elemtype = ARR_ELEMTYPE(arr);
		int16		typlen;
		bool		typbyval;
		char		typalign;
		Datum	   *elems;
		bool	   *nulls;
		int			n;
		int			i;

		get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
		deconstruct_array(arr, elemtype, typlen, typbyval, typalign,
						  &elems, &nulls, &n);
		for (i = 0; i < n; i++)
			if (!nulls[i])
				*texts = lappend(*texts, datum_text(elems[i], elemtype));
	}
	else
		*texts = list_make1(datum_text(d, type));

	{
		ListCell   *lc;

		foreach(lc, *texts)
		{
			char	   *t = lfirst(lc);

			if (numeric ? !is_integer_text(t) : !sendable_text(t))
				return false;
			/* a value outside a documented set: Coding refuses the request */
			if (pc->accepted && !string_in(pc->accepted, t))
				return false;
		}
	}
	return true;
}

/*
 * datum_timestamptz
 *		A date, timestamp or timestamptz value as timestamptz (as the
 *		comparison operator itself would convert it).
 */
static bool
datum_timestamptz(Datum d, Oid type, TimestampTz *ts)
{
	int			overflow = 0;

	switch (type)
	{
		case TIMESTAMPTZOID:
			*ts = DatumGetTimestampTz(d);
			break;
		case TIMESTAMPOID:
			/* out of timestamptz's range: the comparison itself copes, so not sent */
			*ts = timestamp2timestamptz_opt_overflow(DatumGetTimestamp(d), &overflow);
			break;
		case DATEOID:
			*ts = date2timestamptz_opt_overflow(DatumGetDateADT(d), &overflow);
			break;
		default:
			return false;
	}
	return overflow == 0 && !TIMESTAMP_NOT_FINITE(*ts);
}

/*
 * china_day
 *		The calendar day (YYYY-MM-DD) of a moment in China time (UTC+8, no
 *		daylight saving), which is how Coding reads date conditions.
 */
static char *
china_day(TimestampTz ts)
{
	int64		days = (ts + (int64) 8 * USECS_PER_HOUR) / USECS_PER_DAY;
	int			y,
				m,
				d;

	if ((ts + (int64) 8 * USECS_PER_HOUR) % USECS_PER_DAY < 0)
		days--;					/* floor for moments before 2000 */
	j2date((int) (days + POSTGRES_EPOCH_JDATE), &y, &m, &d);
	if (y < 1000)
		return pstrdup("1000-01-01");
	if (y > 9999)
		return pstrdup("9999-12-31");
	return psprintf("%04d-%02d-%02d", y, m, d);
}

/*
 * like_keyword
 *		The longest run of literal characters in a LIKE pattern: every row
 *		the pattern matches contains it, so it can be Coding's KEYWORD.
 *
 *		For ILIKE ("caseless") the letters i and k end a run too, and are
 *		left out: PostgreSQL's lower() turns "İ" into "i" (or "i̇") and the
 *		Kelvin sign into "k", and a Turkish collation "I" into "ı", where
 *		Coding's own folding differs, so a keyword holding them could miss
 *		rows that ILIKE matches.  No other letter lowers from or to ASCII.
 */
static char *
like_keyword(const char *pattern, bool caseless)
{
	StringInfoData run;
	char	   *best = pstrdup("");
	const char *p;

	initStringInfo(&run);
	for (p = pattern; *p; p++)
	{
		if (*p == '%' || *p == '_')
		{
			if (run.len > (int) strlen(best))
				best = pstrdup(run.data);
			resetStringInfo(&run);
			continue;
		}
		if (*p == '\\')
		{
			if (p[1] == '\0')
				return NULL;	/* PostgreSQL's own check raises the error */
			p++;
		}
		if (caseless && strchr("iIkK", *p) != NULL)
		{
			if (run.len > (int) strlen(best))
				best = pstrdup(run.data);
			resetStringInfo(&run);
			continue;
		}
		appendStringInfoChar(&run, *p);
	}
	if (run.len > (int) strlen(best))
		best = pstrdup(run.data);
	return best;
}

/*
 * caseless_beyond_ascii
 *		Whether every non-ASCII letter of an ILIKE keyword is its own lower
 *		and upper case (Chinese, emoji).  Coding folds case its own way; for
 *		"É" or "İ" its match could miss rows PostgreSQL's lower() would
 *		find, so such a keyword is not sent.
 */
static bool
caseless_beyond_ascii(const char *kw, Oid collation)
{
	StringInfoData rest;
	const char *p;
	char	   *lower;
	char	   *upper;

	initStringInfo(&rest);
	for (p = kw; *p; p++)
		if (IS_HIGHBIT_SET(*p))
			appendStringInfoChar(&rest, *p);
	if (rest.len == 0)
		return true;
	lower = str_tolower(rest.data, rest.len, collation);
	upper = str_toupper(rest.data, rest.len, collation);
	return strcmp(lower, rest.data) == 0 && strcmp(upper, rest.data) == 0;
}

/*
 * label_value
 *		labels @> '[{"Name": "bug"}]' (or {"Id": 7}) names one label.
 */
static char *
label_value(Datum d)
{
	char	   *text = DatumGetCString(DirectFunctionCall1(jsonb_out, d));
	cJSON	   *doc = cJSON_Parse(text);
	cJSON	   *obj;
	cJSON	   *v;

	if (!cJSON_IsArray(doc) || cJSON_GetArraySize(doc) != 1)
		return NULL;
	obj = cJSON_GetArrayItem(doc, 0);
	if (!cJSON_IsObject(obj))
		return NULL;
	v = cJSON_GetObjectItemCaseSensitive(obj, "Name");
	if (cJSON_IsString(v) && sendable_text(v->valuestring))
		return pstrdup(v->valuestring);
	v = cJSON_GetObjectItemCaseSensitive(obj, "Id");
	if (cJSON_IsNumber(v))
		return coding_json_scalar_text(v);
	return NULL;
}

/*
 * complement
 *		For <> and NOT IN on a closed-set column: the values not excluded.
 */
static List *
complement(const char *const *all, List *excluded)
{
	List	   *rest = NIL;
	ListCell   *lc;

	for (; *all; all++)
	{
		bool		found = false;

		foreach(lc, excluded)
			if (strcmp(lfirst(lc), *all) == 0)
				found = true;
		if (!found)
			rest = lappend(rest, pstrdup(*all));
	}
	return rest;
}

/* csv: "a,b,c" from a list of strings. */
static char *
csv(List *texts)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, texts)
		appendStringInfo(&buf, "%s%s", buf.len ? "," : "", (char *) lfirst(lc));
	return buf.data;
}

/*
 * add_condition
 *		Add one Conditions entry, the first for its key only (a second clause
 *		on the same key stays local): {Key, Value} or {Key, ConstValue}.
 */
static void
add_condition(CodingRequest *req, List **used_keys, const char *key,
			  const char *value, const char *const_value)
{
	cJSON	   *c;

	if (list_member_ptr(*used_keys, key))
		return;
	c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "Key", key);
	if (value)
		cJSON_AddStringToObject(c, "Value", value);
	if (const_value)
		cJSON_AddStringToObject(c, "ConstValue", const_value);
	cJSON_AddItemToArray(req->conditions, c);
	*used_keys = lappend(*used_keys, (void *) key);
}

/* A date range being assembled from several items on one column. */
typedef struct DateRange
{
	const char *key;
	TimestampTz lower;
	TimestampTz upper;
	bool		has_lower;
	bool		has_upper;
	bool		unset;			/* IS NULL */
	Bitmapset  *items;			/* the items that narrowed it */
} DateRange;

/*
 * coding_build_request
 *		Turn the pushed items and their evaluated values into the request:
 *		IssueType, Conditions (issues), Status/Assignee/Keywords/dates
 *		(iterations), or the codes to look up.  An item whose value cannot be
 *		expressed is simply not sent: the local check still applies.
 *		req->sent says which items shaped the request, for EXPLAIN.
 */
void
coding_build_request(CodingRequest *req, CodingResource res,
					 const char *table_issue_type, List *items,
					 Datum *values, bool *isnull, Oid *types)
{
	DateRange	ranges[4];
	int			nranges = 0;
	List	   *used_keys = NIL;
	ListCell   *lc;
	int			i = 0;
	int			code_item = -1;

	memset(req, 0, sizeof(*req));
	req->issue_type = table_issue_type;
	req->conditions = cJSON_CreateArray();
	req->iteration_fields = cJSON_CreateObject();
	initStringInfo(&req->description);

	foreach(lc, items)
	{
		CodingPushedItem *item = lfirst(lc);
		const PushableColumn *pc = NULL;
		Datum		d = values[i];
		bool		null = isnull[i];
		Oid			type = types[i];
		List	   *texts = NIL;
		int			k;
		int			nconditions = cJSON_GetArraySize(req->conditions);
		int			nfields = cJSON_GetArraySize(req->iteration_fields);
		const char *issue_type = req->issue_type;
		bool		key_lookup = req->key_lookup;
		bool		empty = req->empty;

		i++;
		for (k = 0; k < (int) lengthof(pushable); k++)
			if (pushable[k].res == res && strcmp(pushable[k].column, item->column) == 0)
				pc = &pushable[k];
		if (pc == NULL)
			continue;

		/* "col = NULL" or "col = ANY(NULL)" is never true */
		if (item->op != CODING_OP_NULL && null)
		{
			req->empty = true;
			req->sent = bms_add_member(req->sent, i - 1);
			continue;
		}

		switch (pc->kind)
		{
			case PK_ISSUE_TYPE:
				{
					char	   *t = datum_text(d, type);

					if (strcmp(t, "DEFECT") != 0 && strcmp(t, "REQUIREMENT") != 0 &&
						strcmp(t, "MISSION") != 0 && strcmp(t, "EPIC") != 0)
						break;	/* SUB_TASK and others: IssueType cannot say */
					if (strcmp(req->issue_type, "ALL") == 0)
						req->issue_type = t;
					else if (strcmp(req->issue_type, t) != 0)
						req->empty = true;	/* the table lists another type */
				}
				break;

			case PK_LIST:
				if (item->op == CODING_OP_NULL)
					add_condition(req, &used_keys, pc->key, NULL, "UNSPECIFIC");
				else if (!value_texts(d, type, item->op, pc, &texts))
					break;
				else if (item->op == CODING_OP_NOT_ANY && texts == NIL)
					break;		/* <> ALL('{}') is true, for NULL too */
				else if ((item->op == CODING_OP_NE || item->op == CODING_OP_NOT_ANY) &&
						 (texts = complement(pc->closed_set, texts)) == NIL)
					req->empty = true;	/* <> every value there is */
				else if (texts == NIL)
					req->empty = true;	/* = ANY('{}') */
				else
					add_condition(req, &used_keys, pc->key, csv(texts), NULL);
				break;

			case PK_DATE:
				{
					DateRange  *r = NULL;
					TimestampTz ts;

					for (k = 0; k < nranges; k++)
						if (ranges[k].key == pc->key)
							r = &ranges[k];
					if (r == NULL)
					{
						r = &ranges[nranges++];
						memset(r, 0, sizeof(*r));
						r->key = pc->key;
					}
					if (item->op == CODING_OP_NULL)
					{
						r->unset = true;
						r->items = bms_add_member(r->items, i - 1);
						break;
					}
					if (!datum_timestamptz(d, type, &ts))
						break;
					if ((item->op == CODING_OP_EQ || item->op == CODING_OP_GT ||
						 item->op == CODING_OP_GE) &&
						(!r->has_lower || ts > r->lower))
					{
						r->lower = ts;
						r->has_lower = true;
						r->items = bms_add_member(r->items, i - 1);
					}
					if ((item->op == CODING_OP_EQ || item->op == CODING_OP_LT ||
						 item->op == CODING_OP_LE) &&
						(!r->has_upper || ts < r->upper))
					{
						r->upper = ts;
						r->has_upper = true;
						r->items = bms_add_member(r->items, i - 1);
					}
				}
				break;

			case PK_KEYWORD:
			case PK_ITER_KEYWORDS:
				{
					char	   *t = datum_text(d, type);
					char	   *kw = item->op == CODING_OP_EQ ? t :
						like_keyword(t, item->op == CODING_OP_ILIKE);

					if (kw == NULL || kw[0] == '\0')
						break;
					if (item->op == CODING_OP_ILIKE && !caseless_beyond_ascii(kw, item->collation))
						break;
					if (pc->kind == PK_ITER_KEYWORDS)
					{
						if (!cJSON_HasObjectItem(req->iteration_fields, "Keywords"))
							cJSON_AddStringToObject(req->iteration_fields, "Keywords", kw);
					}
					else
						add_condition(req, &used_keys, pc->key, kw, NULL);
				}
				break;

			case PK_LABEL:
				{
					char	   *label = label_value(d);

					if (label)
						add_condition(req, &used_keys, pc->key, label, NULL);
				}
				break;

			case PK_CODE:
				if (req->key_lookup)
					break;		/* one set of codes; the rest is local */
				if (!value_texts(d, type, item->op, pc, &texts))
					break;
				{
					List	   *codes = NIL;
					ListCell   *lc2;

					/* the codes that can exist, once each */
					foreach(lc2, texts)
					{
						int64		code = strtoll(lfirst(lc2), NULL, 10);

						if (code > 0 && code <= PG_INT32_MAX && !list_member_int(codes, (int) code))
							codes = lappend_int(codes, (int) code);
					}
					if (item->only_if_empty)
					{
						/* listed, and checked locally, unless there is none */
						if (codes == NIL)
							req->empty = true;
						break;
					}
					req->key_lookup = true;
					req->codes = codes;
					code_item = i - 1;
				}
				break;

			case PK_ITER_STATUS:
			case PK_ITER_ASSIGNEE:
				{
					const char *field = pc->kind == PK_ITER_STATUS ? "Status" : "Assignee";
					cJSON	   *arr;
					ListCell   *lc2;

					if (cJSON_HasObjectItem(req->iteration_fields, field) ||
						!value_texts(d, type, item->op, pc, &texts) ||
						(item->op == CODING_OP_NOT_ANY && texts == NIL))
						break;
					if (item->op == CODING_OP_NE || item->op == CODING_OP_NOT_ANY)
						texts = complement(pc->closed_set, texts);
					if (texts == NIL)
					{
						req->empty = true;
						break;
					}
					arr = cJSON_AddArrayToObject(req->iteration_fields, field);
					foreach(lc2, texts)
					{
						if (pc->numeric)
							cJSON_AddItemToArray(arr, cJSON_CreateNumber(strtod(lfirst(lc2), NULL)));
						else
							cJSON_AddItemToArray(arr, cJSON_CreateString(lfirst(lc2)));
					}
				}
				break;

			case PK_ITER_START:
			case PK_ITER_END:
				{
					TimestampTz ts;
					const char *field = pc->kind == PK_ITER_START ? "StartDate" : "EndDate";

					if (!cJSON_HasObjectItem(req->iteration_fields, field) &&
						datum_timestamptz(d, type, &ts))
						cJSON_AddStringToObject(req->iteration_fields, field, china_day(ts));
				}
				break;
		}

		/* whether this item changed what is sent (date ranges: below) */
		if (cJSON_GetArraySize(req->conditions) != nconditions ||
			cJSON_GetArraySize(req->iteration_fields) != nfields ||
			req->issue_type != issue_type || req->key_lookup != key_lookup ||
			req->empty != empty)
			req->sent = bms_add_member(req->sent, i - 1);
	}

	/* date ranges: whole China-time days containing the bounds */
	for (i = 0; i < nranges; i++)
	{
		DateRange  *r = &ranges[i];
		cJSON	   *c;

		if (!r->unset && !r->has_lower && !r->has_upper)
			continue;			/* no value could be sent */
		req->sent = bms_add_members(req->sent, r->items);
		if (r->unset && (r->has_lower || r->has_upper))
		{
			req->empty = true;	/* NULL and in a range: never */
			continue;
		}
		c = cJSON_CreateObject();
		cJSON_AddStringToObject(c, "Key", r->key);
		if (r->unset)
			cJSON_AddStringToObject(c, "ConstValue", "UNSPECIFIC");
		else
		{
			if (r->has_lower && r->has_upper && r->lower > r->upper)
				req->empty = true;
			cJSON_AddStringToObject(c, "Value",
									psprintf("%s_%s",
											 r->has_lower ? china_day(r->lower) : "1000-01-01",
											 r->has_upper ? china_day(r->upper) : "9999-12-31"));
		}
		cJSON_AddItemToArray(req->conditions, c);
	}

	/* the EXPLAIN text of what is sent */
	if (req->key_lookup && !req->empty)
	{
		/* the codes replace the listing: only the code item is sent */
		req->sent = bms_make_singleton(code_item);

		appendStringInfoString(&req->description, "DescribeIssue IssueCode IN (");
		foreach(lc, req->codes)
			appendStringInfo(&req->description, "%s%d",
							 foreach_current_index(lc) ? "," : "", lfirst_int(lc));
		appendStringInfoChar(&req->description, ')');
	}
	else
	{
		char	   *conds = cJSON_PrintUnformatted(req->conditions);
		char	   *fields = cJSON_PrintUnformatted(req->iteration_fields);

		if (res == CODING_RES_ISSUES)
		{
			appendStringInfo(&req->description, "IssueType=%s", req->issue_type);
			if (cJSON_GetArraySize(req->conditions) > 0)
				appendStringInfo(&req->description, " Conditions=%s", conds);
		}
		else if (res == CODING_RES_ITERATIONS && cJSON_GetArraySize(req->iteration_fields) > 0)
			appendStringInfo(&req->description, "%s", fields);
	}
	if (req->empty)
		appendStringInfoString(&req->description, " (provably empty: no call)");
}
