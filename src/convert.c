/*-------------------------------------------------------------------------
 * convert.c
 *		The known columns of each resource and the conversion of Coding's
 *		JSON values into Datums.
 *
 * Coding marks "not set" with values rather than nulls: 0 for dates and
 * related ids, "" for enums, -28800000 (1970-01-01 00:00 +08:00) for
 * iteration dates and zero-filled objects such as "Epic":{"Code":0,...}.
 * Those become SQL NULL.  Millisecond epochs become timestamptz, objects
 * and arrays jsonb, and any other type is reached through its input
 * function, with an error context naming the column, field and object.
 *-------------------------------------------------------------------------
 */
#include "coding_fdw.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/sysattr.h"
#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "datatype/timestamp.h"
#include "mb/pg_wchar.h"
#include "nodes/bitmapset.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/date.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "json_fast.h"

/*
 * JSON type tests for the per-value paths: cJSON's own are calls into the
 * shared library (several per value, a few percent of a scan).  cJSON reads
 * a node's type as "type & 0xFF" too (the rest are flags).
 */
#define JTYPE(v)		((v)->type & 0xFF)

/* jsonb's container limits (jsonb_util.c keeps them to itself). */
#define JSONB_MAX_ELEMS (Min(MaxAllocSize / sizeof(JsonbValue), JB_CMASK))
#define JSONB_MAX_PAIRS (Min(MaxAllocSize / sizeof(JsonbPair), JB_CMASK))

/* Coding's "unset" iteration date: 1970-01-01 00:00 in UTC+8. */
#define CODING_UNSET_EPOCH_MS	(-28800000.0)

#define K(name, type, field) {name, type, field, NULL, false, false, false, false}

/*
 * The columns IMPORT FOREIGN SCHEMA creates (interface.md §2), with the
 * API field each reads and its "not set" rule.
 */
static const CodingKnownColumn issue_columns[] = {
	{"team", "text", NULL, NULL, false, false, false, true},
	{"project", "text", NULL, NULL, false, false, false, true},
	{"code", "integer", "Code", NULL, false, false, false, true},
	{"type", "text", "Type", NULL, false, true, false, false},
	{"parent_type", "text", "ParentType", NULL, false, true, false, false},
	K("name", "text", "Name"),
	K("description", "text", "Description"),
	{"issue_status_id", "bigint", "IssueStatusId", NULL, true, false, false, false},
	{"issue_status_name", "text", "IssueStatusName", NULL, false, true, false, false},
	{"issue_status_type", "text", "IssueStatusType", NULL, false, true, false, false},
	{"priority", "smallint", "Priority", NULL, false, true, false, false},
	{"assignee_id", "bigint", "AssigneeId", "Assignee.Id", true, false, false, false},
	K("assignees", "jsonb", "Assignees"),
	{"creator_id", "bigint", "CreatorId", "Creator.Id", true, false, false, false},
	{"iteration_id", "bigint", "IterationId", "Iteration.Id", true, false, false, false},
	{"iteration_code", "integer", "Iteration.Code", NULL, true, false, false, false},
	{"start_date", "timestamptz", "StartDate", NULL, true, false, false, false},
	{"due_date", "timestamptz", "DueDate", NULL, true, false, false, false},
	{"created_at", "timestamptz", "CreatedAt", NULL, true, false, false, false},
	{"updated_at", "timestamptz", "UpdatedAt", NULL, true, false, false, false},
	{"completed_at", "timestamptz", "CompletedAt", NULL, true, false, false, false},
	K("working_hours", "numeric", "WorkingHours"),
	{"story_point", "text", "StoryPoint", NULL, false, true, false, false},
	{"issue_type_id", "bigint", "IssueTypeId", NULL, true, false, false, false},
	K("issue_type_detail", "jsonb", "IssueTypeDetail"),
	K("labels", "jsonb", "Labels"),
	K("custom_fields", "jsonb", "CustomFields"),
	{"parent_code", "integer", "ParentCode", "Parent.Code", true, false, false, false},
	{"assignee", "jsonb", "Assignee", NULL, false, false, true, false},
	{"creator", "jsonb", "Creator", NULL, false, false, true, false},
	{"watchers", "jsonb", "Watchers", NULL, false, false, true, false},
	{"files", "jsonb", "Files", NULL, false, false, true, false},
	{"sub_tasks", "jsonb", "SubTasks", NULL, false, false, true, false},
	{"third_links", "jsonb", "ThirdLinks", NULL, false, false, true, false},
	{"project_module", "jsonb", "ProjectModule", NULL, false, false, true, false},
	{"requirement_type", "jsonb", "RequirementType", NULL, false, false, true, false},
	{"defect_type", "jsonb", "DefectType", NULL, false, false, true, false},
	{"epic", "jsonb", "Epic", NULL, false, false, true, false},
	{"parent", "jsonb", "Parent", NULL, false, false, true, false},
	K("raw", "jsonb", NULL),
};

static const CodingKnownColumn iteration_columns[] = {
	{"team", "text", NULL, NULL, false, false, false, true},
	{"project", "text", NULL, NULL, false, false, false, true},
	{"code", "integer", "Code", NULL, false, false, false, true},
	K("name", "text", "Name"),
	K("goal", "text", "Goal"),
	{"status", "text", "Status", NULL, false, true, false, false},
	{"start_at", "timestamptz", "StartAt", NULL, true, false, false, false},
	{"end_at", "timestamptz", "EndAt", NULL, true, false, false, false},
	{"created_at", "timestamptz", "CreatedAt", NULL, true, false, false, false},
	{"updated_at", "timestamptz", "UpdatedAt", NULL, true, false, false, false},
	{"assignee_id", "bigint", "Assignee", NULL, true, false, false, false},
	{"creator_id", "bigint", "Creator", NULL, true, false, false, false},
	{"starter_id", "bigint", "Starter", NULL, true, false, false, false},
	{"completer_id", "bigint", "Completer", NULL, true, false, false, false},
	{"deleter_id", "bigint", "Deleter", NULL, true, false, false, false},
	K("wait_process_count", "integer", "WaitProcessCount"),
	K("processing_count", "integer", "ProcessingCount"),
	K("completed_count", "integer", "CompletedCount"),
	K("completed_percent", "numeric", "CompletedPercent"),
	K("raw", "jsonb", NULL),
};

static const CodingKnownColumn member_columns[] = {
	{"team", "text", NULL, NULL, false, false, false, true},
	{"project", "text", NULL, NULL, false, false, false, true},
	{"id", "bigint", "Id", NULL, false, false, false, true},
	K("team_id", "bigint", "TeamId"),
	K("name", "text", "Name"),
	K("name_pinyin", "text", "NamePinYin"),
	K("avatar", "text", "Avatar"),
	K("email", "text", "Email"),
	K("phone", "text", "Phone"),
	K("email_validation", "smallint", "EmailValidation"),
	K("phone_validation", "smallint", "PhoneValidation"),
	K("global_key", "text", "GlobalKey"),
	K("status", "smallint", "Status"),
	K("roles", "jsonb", "Roles"),
	K("raw", "jsonb", NULL),
};

/* coding_known_columns: the known columns of a resource. */
const CodingKnownColumn *
coding_known_columns(CodingResource res, int *ncolumns)
{
	switch (res)
	{
		case CODING_RES_ISSUES:
			*ncolumns = lengthof(issue_columns);
			return issue_columns;
		case CODING_RES_ITERATIONS:
			*ncolumns = lengthof(iteration_columns);
			return iteration_columns;
		case CODING_RES_MEMBERS:
			*ncolumns = lengthof(member_columns);
			return member_columns;
	}
	*ncolumns = 0;
	return NULL;
}

/*
 * pascal_case
 *		Default API field of a column: issue_status_name -> IssueStatusName.
 */
static char *
pascal_case(const char *name)
{
	char	   *result = palloc(strlen(name) + 1);
	char	   *out = result;
	bool		upper = true;

	for (; *name; name++)
	{
		if (*name == '_')
		{
			upper = true;
			continue;
		}
		*out++ = upper ? pg_toupper((unsigned char) *name) : *name;
		upper = false;
	}
	*out = '\0';
	return result;
}

/* split_path: "Iteration.Code" -> ("Iteration", "Code"). */
static List *
split_path(const char *field)
{
	List	   *path = NIL;
	char	   *copy = pstrdup(field);
	char	   *part;
	char	   *save;

	for (part = strtok_r(copy, ".", &save); part; part = strtok_r(NULL, ".", &save))
		path = lappend(path, part);
	return path;
}

/*
 * JsonbCache
 *		The last distinct values of one jsonb column with their jsonb.  Coding
 *		repeats small values row after row (the IssueTypeDetail of an issue
 *		type, an assignee list, a label set): comparing a value with a few
 *		remembered ones costs a fraction of building its jsonb again.  A
 *		column whose values rarely repeat (raw, descriptions) stops looking
 *		after a trial.  Only values of at most JCACHE_MAX_NODES nodes and
 *		JCACHE_MAX_JSONB bytes are remembered, and the copies' memory is
 *		reset every JCACHE_RECYCLE copies or past JCACHE_MAX_MEMORY, so it
 *		stays bounded whatever the rows hold.
 */
#define JCACHE_ENTRIES		16		/* values remembered per column */
#define JCACHE_MAX_NODES	64		/* larger values are not remembered */
#define JCACHE_TRIAL		256		/* lookups before the hit rate is judged */
#define JCACHE_RECYCLE		1024	/* copies made before their memory is reset */
#define JCACHE_MAX_JSONB	8192	/* bytes: larger values are not remembered */
#define JCACHE_MAX_MEMORY	(256 * 1024)	/* the copies' memory is reset past this */

struct CodingJsonbCache
{
	MemoryContext cxt;			/* the copies; NULL until the first */
	int			nentries;		/* most recently used first */
	int			copies;			/* made since cxt was last reset */
	uint32		lookups;
	uint32		hits;
	bool		off;			/* values did not repeat enough */
	uint64		fingerprint[JCACHE_ENTRIES];	/* json_fingerprint of each entry */
	struct
	{
		cJSON	   *source;		/* a copy of the value */
		Datum		jsonb;		/* its jsonb */
	}			entry[JCACHE_ENTRIES];
};

static void make_field_index(CodingColumn *cols, int ncols, const char *key_name);
static cJSON *json_path_from(cJSON *item, List *path, int first);

/*
 * coding_make_columns
 *		Describe how to fill each attribute of "rel" that is in "wanted"
 *		(attribute numbers offset by FirstLowInvalidHeapAttributeNumber; a
 *		whole-row reference means all).  Unwanted attributes stay NULL in
 *		the scan's tuples.
 */
CodingColumn *
coding_make_columns(Relation rel, CodingResource res, Bitmapset *wanted,
					int *ncolumns)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	CodingColumn *cols = palloc0(sizeof(CodingColumn) * Max(tupdesc->natts, 1));
	const CodingKnownColumn *known;
	int			nknown;
	int			n = 0;
	int			i;
	bool		whole_row;

	known = coding_known_columns(res, &nknown);
	/* NULL is the empty set (count(*) needs no column), not "all" */
	whole_row = bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, wanted);

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		CodingColumn *col = &cols[n];
		const CodingKnownColumn *kc = NULL;
		char	   *field;
		Oid			infunc;
		int			k;

		if (att->attisdropped)
			continue;
		if (!whole_row &&
			!bms_is_member(att->attnum - FirstLowInvalidHeapAttributeNumber, wanted))
			continue;

		col->attnum = att->attnum;
		col->colname = pstrdup(NameStr(att->attname));
		col->typid = att->atttypid;
		col->typmod = att->atttypmod;
		getTypeInputInfo(att->atttypid, &infunc, &col->typioparam);
		fmgr_info(infunc, &col->infunc);

		for (k = 0; k < nknown; k++)
			if (strcmp(known[k].name, col->colname) == 0)
				kc = &known[k];

		field = coding_column_field_option(RelationGetRelid(rel), att->attnum);
		if (field == NULL && kc)
		{
			if (strcmp(kc->name, "team") == 0)
				col->source = COLSRC_TEAM;
			else if (strcmp(kc->name, "project") == 0)
				col->source = COLSRC_PROJECT;
			else if (strcmp(kc->name, "raw") == 0)
				col->source = COLSRC_RAW;
			else
			{
				col->field = pstrdup(kc->field);
				if (kc->fallback)
					col->fallback = split_path(kc->fallback);
			}
			col->zero_is_null = kc->zero_is_null;
			col->empty_is_null = kc->empty_is_null;
			col->detail_only = kc->detail_only;
		}
		else
		{
			col->source = COLSRC_FIELD;
			col->field = field ? field : pascal_case(col->colname);
			/* a field the list does not return needs DescribeIssue */
			if (res == CODING_RES_ISSUES)
			{
				List	   *p = split_path(col->field);

				/* a column named "." has no key at all: it reads NULL */
				for (k = 0; p != NIL && k < nknown; k++)
					if (known[k].detail_only && known[k].field &&
						strcmp(known[k].field, (char *) linitial(p)) == 0)
						col->detail_only = true;
			}
		}
		if (col->source == COLSRC_FIELD)
			col->path = split_path(col->field);
		if (col->typid == JSONBOID)
			col->jsonb_cache = palloc0(sizeof(struct CodingJsonbCache));
		n++;
	}
	make_field_index(cols, n, res == CODING_RES_MEMBERS ? "Id" : "Code");
	*ncolumns = n;
	return cols;
}

/*
 * CodingFieldIndex
 *		Where a scan's columns find their fields in a row.  Looking each
 *		column's field up by name compares it with every key before it
 *		(cJSON objects are lists): 28 columns of a 30-key issue cost about
 *		400 string comparisons a row, a fifth of a scan.  Instead one pass
 *		over the row's keys fills "found", and since Coding sends the keys
 *		of every row in the same order, the key at each position is first
 *		compared with the one seen there in the previous row: one
 *		comparison a key while the order holds, a search when it changes.
 *
 *		A row view (json_fast.h: the scan's rows left in simdjson's
 *		document) fills "found" by interned key id instead, through
 *		slot_of_key, with its scalars written into "scratch".
 */
#define FIELD_HINTS		64		/* positions remembered */
#define FIELD_HINT_LEN	48		/* longest key remembered */

typedef struct CodingFieldIndex
{
	int			nnames;
	char	  **names;			/* distinct first names of the columns' paths
								 * and fallbacks, and the row's key name */
	cJSON	  **found;			/* this row: first value named names[i], or NULL */
	int			key_slot;		/* slot of the key an error names the row by */
	int16	   *slot_of_key;	/* row views: slot of each interned key id, -1 */
	cJSON	   *scratch;		/* row views: the scalars of the current row */
	const void *view_hints[CODING_JSON_VIEW_HINTS]; /* row views: keys last seen */
	int			hint_slot[FIELD_HINTS]; /* slot of the key last seen there, -1 none */
	const char *hint_key[FIELD_HINTS];	/* that key if interned, else NULL */
	char		hint_name[FIELD_HINTS][FIELD_HINT_LEN];
} CodingFieldIndex;

/* index_name: the slot of a name in the index, added if new */
static int
index_name(CodingFieldIndex *index, char *name)
{
	int			k;

	for (k = 0; k < index->nnames; k++)
		if (strcmp(index->names[k], name) == 0)
			return k;
	index->names[index->nnames] = name;
	return index->nnames++;
}

/* make_field_index: the shared index of the field columns of a scan */
static void
make_field_index(CodingColumn *cols, int ncols, const char *key_name)
{
	CodingFieldIndex *index = palloc0(sizeof(CodingFieldIndex));
	int			maxnames = 2 * ncols + 1;
	int			i;

	index->names = palloc(sizeof(char *) * maxnames);
	index->found = palloc(sizeof(cJSON *) * maxnames);
	for (i = 0; i < ncols; i++)
	{
		CodingColumn *col = &cols[i];

		col->index = index;
		col->slot = col->fallback_slot = -1;
		if (col->source != COLSRC_FIELD || col->path == NIL)
			continue;
		col->slot = index_name(index, linitial(col->path));
		if (col->fallback != NIL)
			col->fallback_slot = index_name(index, linitial(col->fallback));
	}
	index->key_slot = index_name(index, pstrdup(key_name));
	for (i = 0; i < FIELD_HINTS; i++)
		index->hint_slot[i] = -1;
}

/*
 * view_alloc
 *		Allocator for the objects and arrays of a row view: the current
 *		(row) memory context, NULL instead of an error (json_fast.h).
 */
static void *
view_alloc(size_t size)
{
	return palloc_extended(size, MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE);
}

/*
 * index_view
 *		index_row for a row view.  The map from key ids to slots is made at
 *		the first row: every name is interned by then, since the parser
 *		makes row views only once it has interned every key the scan reads.
 */
static void
index_view(CodingFieldIndex *index, cJSON *item)
{
	if (index->slot_of_key == NULL)
	{
		MemoryContext cxt = GetMemoryChunkContext(index);
		int16	   *map = MemoryContextAlloc(cxt, sizeof(int16) * CODING_JSON_MAX_KEY_IDS);
		int			k;

		for (k = 0; k < CODING_JSON_MAX_KEY_IDS; k++)
			map[k] = -1;
		for (k = 0; k < index->nnames; k++)
		{
			int			id = coding_json_key_id(index->names[k]);

			if (id < 0)
				elog(ERROR, "coding_fdw: the field \"%s\" of a row view is not interned",
					 index->names[k]);
			map[id] = k;
		}
		index->scratch = MemoryContextAllocZero(cxt, sizeof(cJSON) * index->nnames);
		index->slot_of_key = map;
	}
	if (!coding_json_view_fields(item, index->slot_of_key, index->scratch, index->found,
								 index->view_hints, view_alloc))
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
						errmsg("out of memory")));
}

/* index_row: find every name of the index in one pass over the row's keys */
static void
index_row(CodingFieldIndex *index, cJSON *item)
{
	cJSON	   *child;
	int			pos = 0;

	memset(index->found, 0, sizeof(cJSON *) * index->nnames);
	if (!cJSON_IsObject(item) || index->nnames == 0)
		return;
	if (item->type & CODING_JSON_VIEW)
	{
		index_view(index, item);
		return;
	}
	cJSON_ArrayForEach(child, item)
	{
		const char *key = child->string ? child->string : "";
		int			slot = -2;	/* not known yet */

		/* interned keys (json_fast.h) are the same pointer in every row */
		if (pos < FIELD_HINTS && key == index->hint_key[pos])
			slot = index->hint_slot[pos];
		else if (pos < FIELD_HINTS && index->hint_name[pos][0] != '\0' &&
				 strcmp(key, index->hint_name[pos]) == 0)
		{
			slot = index->hint_slot[pos];
			index->hint_key[pos] = CODING_JSON_KEY_IS_INTERNED(key) ? key : NULL;
		}
		if (slot == -2)
		{
			int			k;

			slot = -1;
			for (k = 0; k < index->nnames; k++)
				if (strcmp(key, index->names[k]) == 0)
				{
					slot = k;
					break;
				}
			if (pos < FIELD_HINTS && strlen(key) < FIELD_HINT_LEN)
			{
				strcpy(index->hint_name[pos], key);
				index->hint_slot[pos] = slot;
				index->hint_key[pos] = CODING_JSON_KEY_IS_INTERNED(key) ? key : NULL;
			}
		}
		/* the first of duplicate keys wins, as in a lookup by name */
		if (slot >= 0 && index->found[slot] == NULL)
			index->found[slot] = child;
		pos++;
	}
}

/* field_value: a column's value in the row index_row last saw */
static cJSON *
field_value(CodingColumn *col)
{
	cJSON	  **found = col->index->found;
	cJSON	   *v = NULL;

	/* the first name comes from the index, the rest ("Code" of "Iteration.Code") by name */
	if (col->slot >= 0 && found[col->slot] != NULL)
		v = json_path_from(found[col->slot], col->path, 1);
	if (v == NULL && col->fallback_slot >= 0 && found[col->fallback_slot] != NULL)
		v = json_path_from(found[col->fallback_slot], col->fallback, 1);
	return v;
}

/*
 * json_path_from
 *		Follow a field path from its element "first" on through nested
 *		objects; NULL where it ends.
 */
static cJSON *
json_path_from(cJSON *item, List *path, int first)
{
	ListCell   *lc;

	for_each_from(lc, path, first)
	{
		if (!cJSON_IsObject(item))
			return NULL;
		item = cJSON_GetObjectItemCaseSensitive(item, (char *) lfirst(lc));
		if (item == NULL)
			return NULL;
	}
	return item;
}

/*
 * coding_json_is_unset_object
 *		True for Coding's zero-filled "not set" objects: every scalar inside
 *		is 0, "", false or null and every array is empty.
 */
bool
coding_json_is_unset_object(cJSON *value)
{
	cJSON	   *child;

	if (cJSON_IsObject(value))
	{
		cJSON_ArrayForEach(child, value)
		{
			if (cJSON_IsObject(child))
			{
				if (!coding_json_is_unset_object(child))
					return false;
			}
			else if (cJSON_IsArray(child))
			{
				if (cJSON_GetArraySize(child) > 0)
					return false;
			}
			else if (cJSON_IsNumber(child))
			{
				if (child->valuedouble != 0)
					return false;
			}
			else if (cJSON_IsString(child))
			{
				if (child->valuestring[0] != '\0')
					return false;
			}
			else if (cJSON_IsTrue(child))
				return false;
		}
		return true;
	}
	return false;
}

/*
 * exact_integer
 *		Whether a JSON number is an integer that a double holds exactly
 *		(|d| < 2^53), so it converts as an int64 with no rounding.
 */
static inline bool
exact_integer(double d)
{
	return d == floor(d) && fabs(d) < 9007199254740992.0;
}

/*
 * number_text
 *		A JSON number as text: integers in digits (those of 2^53 and more
 *		lose precision, as doubles, but still read into a bigint; the
 *		shortest form would be 9.007199254740992e+15, which no integer type
 *		accepts), others in the shortest form that reads back to the same
 *		double (1.5, not 1.50000000000000000).
 */
static char *
number_text(double d)
{
	char	   *buf = palloc(DOUBLE_SHORTEST_DECIMAL_LEN + 1);

	if (d == floor(d) && fabs(d) < 9223372036854775808.0)
		snprintf(buf, DOUBLE_SHORTEST_DECIMAL_LEN + 1, "%.0f", d);
	else
		double_to_shortest_decimal_buf(d, buf);
	return buf;
}

/*
 * remote_text
 *		A string from Coding (UTF-8) converted to the database encoding,
 *		rejecting invalid byte sequences.
 */
static char *
remote_text(const char *s)
{
	return pg_any_to_server(s, strlen(s), PG_UTF8);
}

/*
 * node_text
 *		The text of a string node (its key when "key"), in the database
 *		encoding, and its length.  simdjson's trees are already valid UTF-8
 *		and carry their string lengths (CODING_JSON_UTF8): in a UTF-8
 *		database they are used as they are, where verifying and measuring
 *		each string again was a tenth of a scan.
 */
static const char *
node_text(cJSON *node, bool key, int *len)
{
	const char *s = key ? (node->string ? node->string : "") : node->valuestring;

	if ((node->type & CODING_JSON_UTF8) && GetDatabaseEncoding() == PG_UTF8)
	{
		*len = key ? (int) strlen(s) : node->valueint;
		Assert(key || strlen(s) == (size_t) node->valueint);
		return s;
	}
	s = remote_text(s);
	*len = strlen(s);
	return s;
}

/*
 * coding_json_scalar_text
 *		A JSON value as text: strings as is, numbers and booleans in their
 *		JSON spelling, objects and arrays as compact JSON.  Used for pushed
 *		down values and error messages as well as for conversion.
 */
char *
coding_json_scalar_text(cJSON *value)
{
	if (cJSON_IsString(value))
	{
		int			len;

		return (char *) node_text(value, false, &len);
	}
	if (cJSON_IsNumber(value))
		return number_text(value->valuedouble);
	if (cJSON_IsTrue(value))
		return pstrdup("true");
	if (cJSON_IsFalse(value))
		return pstrdup("false");
	{
		char	   *s = cJSON_PrintUnformatted(value);

		if (s == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
							errmsg("out of memory")));
		return remote_text(s);
	}
}

/*
 * jsonb_scalar
 *		A cJSON scalar as a JsonbValue: strings converted to the database
 *		encoding, integers exactly, other numbers in their shortest form.
 */
static void
jsonb_scalar(cJSON *v, JsonbValue *jv)
{
	switch (JTYPE(v))
	{
		case cJSON_String:
			jv->type = jbvString;
			jv->val.string.val = (char *) node_text(v, false, &jv->val.string.len);
			break;
		case cJSON_Number:
			{
				double		d = v->valuedouble;

				jv->type = jbvNumeric;
				if (exact_integer(d))
					jv->val.numeric = int64_to_numeric((int64) d);
				else
					jv->val.numeric =
						DatumGetNumeric(DirectFunctionCall3(numeric_in,
															CStringGetDatum(number_text(d)),
															ObjectIdGetDatum(InvalidOid),
															Int32GetDatum(-1)));
			}
			break;
		case cJSON_True:
		case cJSON_False:
			jv->type = jbvBool;
			jv->val.boolean = JTYPE(v) == cJSON_True;
			break;
		default:
			jv->type = jbvNull;
			break;
	}
}

/*
 * pair_cmp
 *		jsonb's order of object keys (shorter first, then bytewise), and for
 *		equal keys the later one first: the order pushJsonbValue's
 *		uniqueifyJsonbObject sorts in, whose first of equal keys survives,
 *		so the last duplicate wins as in jsonb_in.
 */
static inline int
pair_cmp(const JsonbPair *a, const JsonbPair *b)
{
	int			res;

	if (a->key.val.string.len != b->key.val.string.len)
		return a->key.val.string.len > b->key.val.string.len ? 1 : -1;
	res = memcmp(a->key.val.string.val, b->key.val.string.val, a->key.val.string.len);
	if (res == 0)
		res = a->order > b->order ? -1 : 1;
	return res;
}

/* same_key: whether two pairs have the same key */
static inline bool
same_key(const JsonbPair *a, const JsonbPair *b)
{
	return a->key.val.string.len == b->key.val.string.len &&
		memcmp(a->key.val.string.val, b->key.val.string.val, a->key.val.string.len) == 0;
}

/* pair_qsort_cmp: pair_cmp for qsort (a total order: no two pairs equal) */
static int
pair_qsort_cmp(const void *a, const void *b)
{
	return pair_cmp((const JsonbPair *) a, (const JsonbPair *) b);
}

/*
 * sort_pairs
 *		Sort an object's pairs into jsonb's key order and drop all but the
 *		last of duplicate keys; returns the number left.  Coding's objects
 *		have a handful of keys, where an insertion sort beats qsort; a big
 *		object (a map of thousands of keys) must not take quadratic time.
 */
#define SORT_PAIRS_INSERTION_MAX 32

static int
sort_pairs(JsonbPair *pairs, int n)
{
	int			i;
	int			out = 0;

	if (n > SORT_PAIRS_INSERTION_MAX)
		qsort(pairs, n, sizeof(JsonbPair), pair_qsort_cmp);
	else
		for (i = 1; i < n; i++)
		{
			JsonbPair	p = pairs[i];
			int			j = i - 1;

			while (j >= 0 && pair_cmp(&pairs[j], &p) > 0)
			{
				pairs[j + 1] = pairs[j];
				j--;
			}
			pairs[j + 1] = p;
		}
	/* the first of equal keys is the one kept (pair_cmp put the last first) */
	for (i = 1; i < n; i++)
		if (!same_key(&pairs[i], &pairs[out]) && ++out != i)
			pairs[out] = pairs[i];
	return Min(n, out + 1);
}

/*
 * KeyOrder
 *		The jsonb order of an object's keys, remembered by the keys' interned
 *		pointers (json_fast.h).  Coding's rows and nested objects repeat the
 *		same key sequence row after row; sorting 27 keys for each row was a
 *		fifth of converting raw.  Only for objects whose keys are all interned
 *		(simdjson's trees) in a UTF-8 database, where no key or value can fail
 *		to convert, so building only the surviving pairs' values (a later
 *		duplicate key wins) cannot skip an error the full path would raise.
 *		Process-lifetime, like the interned keys the entries point to.
 */
#define KEY_ORDERS			8		/* sequences remembered */
#define KEY_ORDER_MAX_KEYS	64		/* longer objects are sorted each time */

typedef struct KeyOrder
{
	int			nkeys;			/* 0: unused */
	int			nout;			/* pairs left after duplicates */
	const char *keys[KEY_ORDER_MAX_KEYS];	/* the object's keys, in its order */
	uint8		source[KEY_ORDER_MAX_KEYS]; /* sorted pair j is key source[j] */
	int			len[KEY_ORDER_MAX_KEYS];	/* its length */
} KeyOrder;

static KeyOrder key_orders[KEY_ORDERS];
static int	key_orders_next = 0;

static void cjson_to_jsonb_value(cJSON *v, JsonbValue *out);
static void object_to_jsonb_value(cJSON *v, int n, JsonbValue *out);

/*
 * interned_keys
 *		An object's keys and children, if it has 2 to KEY_ORDER_MAX_KEYS keys,
 *		all interned, in a UTF-8 database (KeyOrder's conditions).
 */
static bool
interned_keys(cJSON *v, int n, const char **keys, cJSON **children)
{
	cJSON	   *child;
	int			i = 0;

	if (n < 2 || n > KEY_ORDER_MAX_KEYS || GetDatabaseEncoding() != PG_UTF8)
		return false;
	for (child = v->child; child != NULL; child = child->next)
	{
		if (child->string == NULL || !CODING_JSON_KEY_IS_INTERNED(child->string))
			return false;
		keys[i] = child->string;
		children[i++] = child;
	}
	return true;
}

/*
 * object_in_known_order
 *		Fill out's pairs (allocated for n) in the remembered jsonb order of
 *		the key sequence "keys"; false when it is not remembered.
 */
static bool
object_in_known_order(const char **keys, cJSON **children, int n, JsonbValue *out)
{
	int			k;
	int			j;

	for (k = 0; k < KEY_ORDERS; k++)
	{
		KeyOrder   *order = &key_orders[k];
		int			nout = order->nout;

		if (order->nkeys != n || memcmp(order->keys, keys, sizeof(char *) * n) != 0)
			continue;
		/* keys first: converting nested objects may replace this entry */
		for (j = 0; j < nout; j++)
		{
			JsonbPair  *pair = &out->val.object.pairs[j];

			pair->key.type = jbvString;
			pair->key.val.string.val = (char *) keys[order->source[j]];
			pair->key.val.string.len = order->len[j];
			pair->order = order->source[j];
		}
		for (j = 0; j < nout; j++)
			cjson_to_jsonb_value(children[out->val.object.pairs[j].order],
								 &out->val.object.pairs[j].value);
		out->val.object.nPairs = nout;
		return true;
	}
	return false;
}

/* remember_key_order: remember the order sort_pairs gave the keys "keys" */
static void
remember_key_order(const char **keys, int n, JsonbValue *out)
{
	KeyOrder   *order;
	int			j;

	order = &key_orders[key_orders_next];
	key_orders_next = (key_orders_next + 1) % KEY_ORDERS;
	order->nkeys = n;
	order->nout = out->val.object.nPairs;
	memcpy(order->keys, keys, sizeof(char *) * n);
	for (j = 0; j < order->nout; j++)
	{
		order->source[j] = (uint8) out->val.object.pairs[j].order;
		order->len[j] = out->val.object.pairs[j].key.val.string.len;
	}
}

/*
 * cjson_to_jsonb_value
 *		The JsonbValue tree of a cJSON value, built in one pass: containers
 *		get their final arrays at once and objects are sorted here, the tree
 *		pushJsonbValue would have built token by token (which copied every
 *		value and grew every array, about half the cost of a jsonb column).
 */
static void
cjson_to_jsonb_value(cJSON *v, JsonbValue *out)
{
	cJSON	   *child;
	int			n = 0;
	int			i = 0;

	check_stack_depth();
	if (JTYPE(v) != cJSON_Object && JTYPE(v) != cJSON_Array)
	{
		jsonb_scalar(v, out);
		return;
	}
	CHECK_FOR_INTERRUPTS();		/* a large value is a long loop */
	for (child = v->child; child != NULL; child = child->next)
		n++;
	if (JTYPE(v) == cJSON_Array)
	{
		if ((size_t) n > JSONB_MAX_ELEMS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("number of jsonb array elements exceeds the maximum allowed (%zu)",
							JSONB_MAX_ELEMS)));
		out->type = jbvArray;
		out->val.array.rawScalar = false;
		out->val.array.nElems = n;
		out->val.array.elems = palloc(sizeof(JsonbValue) * Max(n, 1));
		for (child = v->child; child != NULL; child = child->next)
			cjson_to_jsonb_value(child, &out->val.array.elems[i++]);
		return;
	}
	if ((size_t) n > JSONB_MAX_PAIRS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("number of jsonb object pairs exceeds the maximum allowed (%zu)",
						JSONB_MAX_PAIRS)));
	object_to_jsonb_value(v, n, out);
}

/*
 * object_to_jsonb_value
 *		The JsonbValue of an object of n keys: in a remembered key order when
 *		its key sequence recurs, else sorted (and the order remembered).  A
 *		function of its own so that only objects carry the key arrays on the
 *		stack, not every level of cjson_to_jsonb_value's recursion.
 */
static pg_noinline void
object_to_jsonb_value(cJSON *v, int n, JsonbValue *out)
{
	const char *keys[KEY_ORDER_MAX_KEYS];
	cJSON	   *children[KEY_ORDER_MAX_KEYS];
	bool		interned = interned_keys(v, n, keys, children);
	cJSON	   *child;
	int			i = 0;

	out->type = jbvObject;
	out->val.object.pairs = palloc(sizeof(JsonbPair) * Max(n, 1));
	if (interned && object_in_known_order(keys, children, n, out))
		return;
	for (child = v->child; child != NULL; child = child->next)
	{
		JsonbPair  *pair = &out->val.object.pairs[i];

		pair->key.type = jbvString;
		pair->key.val.string.val = (char *) node_text(child, true, &pair->key.val.string.len);
		pair->order = i++;
		cjson_to_jsonb_value(child, &pair->value);
	}
	out->val.object.nPairs = sort_pairs(out->val.object.pairs, n);
	if (interned)
		remember_key_order(keys, n, out);
}

/*
 * cjson_to_jsonb
 *		A cJSON value as jsonb, built directly from the parsed tree: printing
 *		it as text for jsonb_in to parse again would do the work twice (raw
 *		alone tripled the cost of a scan).
 */
static Datum
cjson_to_jsonb(cJSON *v)
{
	JsonbValue	result;

	cjson_to_jsonb_value(v, &result);
	return JsonbPGetDatum(JsonbValueToJsonb(&result));
}

/* same_json: whether two values would give the same jsonb (same spelling) */
static bool
same_json(cJSON *a, cJSON *b)
{
	cJSON	   *ca;
	cJSON	   *cb;

	if (JTYPE(a) != JTYPE(b))
		return false;
	switch (JTYPE(a))
	{
		case cJSON_String:
			/* simdjson's strings carry their length: compare that, then bytes */
			if (a->type & b->type & CODING_JSON_UTF8)
				return a->valueint == b->valueint &&
					memcmp(a->valuestring, b->valuestring, a->valueint) == 0;
			return strcmp(a->valuestring, b->valuestring) == 0;
		case cJSON_Number:
			return a->valuedouble == b->valuedouble;
		case cJSON_Array:
		case cJSON_Object:
			for (ca = a->child, cb = b->child; ca && cb; ca = ca->next, cb = cb->next)
			{
				/* two interned keys differ when their pointers do */
				if (JTYPE(a) == cJSON_Object && ca->string != cb->string &&
					((CODING_JSON_KEY_IS_INTERNED(ca->string) &&
					  CODING_JSON_KEY_IS_INTERNED(cb->string)) ||
					 strcmp(ca->string ? ca->string : "", cb->string ? cb->string : "") != 0))
					return false;
				if (!same_json(ca, cb))
					return false;
			}
			return ca == NULL && cb == NULL;
		default:
			return true;		/* true, false, null */
	}
}

/* count_nodes: the nodes of a value, counting stops past "limit" */
static int
count_nodes(cJSON *v, int limit)
{
	int			n = 1;
	cJSON	   *child;

	for (child = v->child; child != NULL && n <= limit; child = child->next)
		n += count_nodes(child, limit - n);
	return n;
}

/* copy_json: a copy of a value in the current memory context */
static cJSON *
copy_json(cJSON *v)
{
	cJSON	   *copy = palloc0(sizeof(cJSON));
	cJSON	   *child;

	copy->type = v->type;
	copy->valueint = v->valueint;
	copy->valuedouble = v->valuedouble;
	if (v->valuestring)
		copy->valuestring = pstrdup(v->valuestring);
	if (v->string && CODING_JSON_KEY_IS_INTERNED(v->string))
		copy->string = v->string;	/* lives as long as the process */
	else if (v->string)
		copy->string = pstrdup(v->string);
	/* appends in constant time (it keeps the last child in child->prev) */
	for (child = v->child; child != NULL; child = child->next)
		cJSON_AddItemToArray(copy, copy_json(child));
	return copy;
}

/*
 * fingerprint_into
 *		Mix a value into *h: its type, its children's count (up to 64) and,
 *		while *leaves lasts, its first scalars.  Only what same_json compares
 *		goes in (no key addresses: equal keys may be two copies), and zeros
 *		of either sign mix alike, since they compare equal.
 */
static void
fingerprint_into(cJSON *v, uint64 *h, int *leaves)
{
	uint64		x = 0;
	cJSON	   *child;
	double		d;
	size_t		len;

	switch (JTYPE(v))
	{
		case cJSON_Number:
			d = v->valuedouble == 0 ? 0.0 : v->valuedouble;
			memcpy(&x, &d, sizeof(x));
			(*leaves)--;
			break;
		case cJSON_String:
			len = (v->type & CODING_JSON_UTF8) ? (size_t) v->valueint : strlen(v->valuestring);
			memcpy(&x, v->valuestring, Min(len, sizeof(x)));
			x ^= len << 56;
			(*leaves)--;
			break;
		case cJSON_Array:
		case cJSON_Object:
			for (child = v->child; child != NULL && x < 64; child = child->next)
			{
				if (*leaves > 0)
					fingerprint_into(child, h, leaves);
				x++;
			}
			break;
		default:
			break;
	}
	*h = (*h ^ (x + JTYPE(v))) * UINT64CONST(0x9E3779B97F4A7C15);
}

/*
 * json_fingerprint
 *		A summary of a value that is equal for values same_json finds equal,
 *		so the cache passes over a remembered value unlike this one with one
 *		integer comparison instead of a walk through both: most lookups meet
 *		several such values before their own, or miss.
 */
static uint64
json_fingerprint(cJSON *v)
{
	uint64		h = 0;
	int			leaves = 4;

	fingerprint_into(v, &h, &leaves);
	return h;
}

/*
 * cached_jsonb
 *		The jsonb of an object or array of a jsonb column, from the column's
 *		cache when the value was seen lately.  A cached Datum is shared by
 *		the rows it repeats in and lives until the cache recycles its memory,
 *		which only happens while a later row is converted, so it outlives
 *		every row it was returned for (a scan's row lives until the next).
 */
static Datum
cached_jsonb(CodingColumn *col, cJSON *v)
{
	struct CodingJsonbCache *c = col->jsonb_cache;
	MemoryContext old;
	Datum		result;
	uint64		fingerprint;
	int			i;

	if (c == NULL || c->off)
		return cjson_to_jsonb(v);
	c->lookups++;
	fingerprint = json_fingerprint(v);
	for (i = 0; i < c->nentries; i++)
		if (c->fingerprint[i] == fingerprint && same_json(c->entry[i].source, v))
		{
			cJSON	   *source = c->entry[i].source;

			result = c->entry[i].jsonb;
			/* most recently used first: the frequent values are met early */
			memmove(&c->entry[1], &c->entry[0], sizeof(c->entry[0]) * i);
			memmove(&c->fingerprint[1], &c->fingerprint[0], sizeof(uint64) * i);
			c->entry[0].source = source;
			c->entry[0].jsonb = result;
			c->fingerprint[0] = fingerprint;
			c->hits++;
			return result;
		}
	result = cjson_to_jsonb(v);
	if (c->lookups >= JCACHE_TRIAL && c->hits < c->lookups / 4)
	{
		c->off = true;
		if (c->cxt)
			MemoryContextDelete(c->cxt);
		c->cxt = NULL;
		return result;
	}
	if (count_nodes(v, JCACHE_MAX_NODES) > JCACHE_MAX_NODES ||
		VARSIZE_ANY(DatumGetPointer(result)) > JCACHE_MAX_JSONB)
		return result;
	if (c->cxt == NULL)
		c->cxt = AllocSetContextCreate(GetMemoryChunkContext(c), "coding_fdw jsonb values",
									   ALLOCSET_SMALL_SIZES);
	if (c->copies >= JCACHE_RECYCLE ||
		MemoryContextMemAllocated(c->cxt, false) > JCACHE_MAX_MEMORY)
	{
		MemoryContextReset(c->cxt);
		c->nentries = c->copies = 0;
	}
	/* the least recently used value makes room */
	c->nentries = Min(c->nentries + 1, JCACHE_ENTRIES);
	memmove(&c->entry[1], &c->entry[0], sizeof(c->entry[0]) * (c->nentries - 1));
	memmove(&c->fingerprint[1], &c->fingerprint[0], sizeof(uint64) * (c->nentries - 1));
	c->fingerprint[0] = fingerprint;
	old = MemoryContextSwitchTo(c->cxt);
	c->entry[0].source = copy_json(v);
	c->entry[0].jsonb = datumCopy(result, false, -1);
	MemoryContextSwitchTo(old);
	c->copies++;
	return result;
}

/*
 * coding_report_jsonb_caches
 *		At DEBUG1, how often each jsonb column of a scan found its value in
 *		its cache, so that a cache that stopped hitting can be seen (and is
 *		tested: it would only make scans slower, never wrong).
 */
void
coding_report_jsonb_caches(CodingColumn *cols, int ncols)
{
	int			i;

	if (!message_level_is_interesting(DEBUG1))
		return;
	for (i = 0; i < ncols; i++)
	{
		struct CodingJsonbCache *c = cols[i].jsonb_cache;

		if (c != NULL && c->lookups > 0)
			elog(DEBUG1, "coding_fdw: jsonb column \"%s\": %u of %u values from the cache%s",
				 cols[i].colname, c->hits, c->lookups, c->off ? " (stopped: too few repeats)" : "");
	}
}

/*
 * empty_jsonb_array
 *		'[]'::jsonb, built once per process: most issues have no labels or
 *		custom fields, and building the same empty array for each was a
 *		large part of converting them.  Datums are read-only to their
 *		consumers, so every row may point at the same one.
 */
static Datum
empty_jsonb_array(void)
{
	static Jsonb *empty = NULL;

	if (empty == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		JsonbParseState *state = NULL;

		pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
		empty = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_ARRAY, NULL));
		MemoryContextSwitchTo(old);
	}
	return JsonbPGetDatum(empty);
}

/*
 * epoch_ms_to_timestamptz
 *		Coding's millisecond Unix epoch as a PostgreSQL timestamptz.
 */
static TimestampTz
epoch_ms_to_timestamptz(double ms)
{
	const int64 shift = (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
	TimestampTz ts;

	/* beyond timestamptz's range (1e300 would overflow the arithmetic) */
	if (!(ms * 1000.0 >= (double) MIN_TIMESTAMP + (double) shift &&
		  ms * 1000.0 < (double) END_TIMESTAMP + (double) shift))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range: %s milliseconds since 1970", number_text(ms))));
	ts = (int64) llround(ms) * 1000 - shift;
	if (!IS_VALID_TIMESTAMP(ts))	/* rounding at the very edge */
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range: %s milliseconds since 1970", number_text(ms))));
	return ts;
}

/* State for the error context of a conversion. */
typedef struct ConvertContext
{
	CodingColumn *col;
	const char *object;			/* "issue" */
	cJSON	   *key;			/* the object's Code or Id, NULL if absent */
} ConvertContext;

/*
 * key_text
 *		The object's key for an error message, spelled only when an error
 *		happens (spelling it for every row cost a printf per row).  Never
 *		raises: it runs inside error reporting.
 */
static const char *
key_text(cJSON *key)
{
	if (cJSON_IsNumber(key))
		return number_text(key->valuedouble);
	if (cJSON_IsString(key) &&
		pg_verify_mbstr(PG_UTF8, key->valuestring, strlen(key->valuestring), true) &&
		GetDatabaseEncoding() == PG_UTF8)
		return key->valuestring;
	return "(unknown)";
}

/* convert_error_callback: name the column, field and object in errors. */
static void
convert_error_callback(void *arg)
{
	ConvertContext *cc = (ConvertContext *) arg;

	if (cc->col == NULL)
		return;
	if (cc->col->source == COLSRC_FIELD)
		errcontext("column \"%s\" (Coding field \"%s\") of %s %s",
				   cc->col->colname, cc->col->field, cc->object, key_text(cc->key));
	else
		errcontext("column \"%s\" of %s %s", cc->col->colname, cc->object,
				   key_text(cc->key));
}

/*
 * convert_value
 *		One JSON value to a Datum of the column's type; *isnull for "not set".
 */
static Datum
convert_value(CodingColumn *col, cJSON *v, bool *isnull)
{
	char	   *text;

	*isnull = true;
	if (v == NULL || JTYPE(v) == cJSON_NULL)
		return (Datum) 0;
	if (JTYPE(v) == cJSON_Object && coding_json_is_unset_object(v))
		return (Datum) 0;
	if (col->typid == JSONBOID && (JTYPE(v) == cJSON_Object || JTYPE(v) == cJSON_Array))
	{
		*isnull = false;
		if (JTYPE(v) == cJSON_Array && v->child == NULL)
			return empty_jsonb_array();
		return cached_jsonb(col, v);
	}

	if (JTYPE(v) == cJSON_Number)
	{
		double		d = v->valuedouble;

		if (col->zero_is_null && d == 0)
			return (Datum) 0;
		if (col->typid == TIMESTAMPTZOID || col->typid == TIMESTAMPOID ||
			col->typid == DATEOID)
		{
			Datum		ts;

			if (d == 0 || d == CODING_UNSET_EPOCH_MS)
				return (Datum) 0;
			/* convert directly: a text round trip would misread "CST" */
			ts = TimestampTzGetDatum(epoch_ms_to_timestamptz(d));
			*isnull = false;
			if (col->typid == DATEOID)
				return DirectFunctionCall1(timestamptz_date, ts);
			if (col->typid == TIMESTAMPOID)
				ts = DirectFunctionCall1(timestamptz_timestamp, ts);
			if (col->typmod >= 0)
				ts = DirectFunctionCall2(col->typid == TIMESTAMPOID ?
										 timestamp_scale : timestamptz_scale,
										 ts, Int32GetDatum(col->typmod));
			return ts;
		}
		*isnull = false;
		if (col->typid == INT4OID && d == floor(d) && d >= PG_INT32_MIN && d <= PG_INT32_MAX)
			return Int32GetDatum((int32) d);
		if (col->typid == INT8OID && exact_integer(d))
			return Int64GetDatum((int64) d);
		/* what numeric_in makes of the integer's spelling */
		if (col->typid == NUMERICOID && col->typmod < 0 && exact_integer(d))
			return NumericGetDatum(int64_to_numeric((int64) d));
		text = number_text(d);
	}
	else if (JTYPE(v) == cJSON_String)
	{
		int			len;

		if (col->empty_is_null && v->valuestring[0] == '\0')
			return (Datum) 0;
		text = (char *) node_text(v, false, &len);
		*isnull = false;
		if (col->typid == TEXTOID)
			return PointerGetDatum(cstring_to_text_with_len(text, len));
	}
	else
		text = coding_json_scalar_text(v);

	*isnull = false;
	return InputFunctionCall(&col->infunc, text, col->typioparam, col->typmod);
}

/*
 * constant_value
 *		The team or project name as a Datum of the column's type, made once
 *		per scan (in the columns' memory) and shared by its rows.
 */
static Datum
constant_value(CodingColumn *col, const char *value)
{
	MemoryContext old;

	if (col->constant_ready)
		return col->constant;
	old = MemoryContextSwitchTo(GetMemoryChunkContext(col->index));
	if (col->typid == TEXTOID || col->typid == VARCHAROID)
		col->constant = CStringGetTextDatum(value);
	else
		col->constant = InputFunctionCall(&col->infunc, (char *) value, col->typioparam,
										  col->typmod);
	MemoryContextSwitchTo(old);
	col->constant_ready = true;
	return col->constant;
}

/*
 * coding_row_to_values
 *		Fill values/nulls (indexed by attnum - 1) for the wanted columns from
 *		one API object; "raw" is what the raw column shows (the list object,
 *		also when item has DescribeIssue's fields merged in).
 */
void
coding_row_to_values(CodingColumn *cols, int ncols, cJSON *item, cJSON *raw,
					 CodingConnInfo *conn, CodingResource res,
					 Datum *values, bool *nulls)
{
	ErrorContextCallback errcb;
	ConvertContext cc;
	int			i;

	if (ncols == 0)
		return;					/* count(*): nothing to convert */
	index_row(cols[0].index, item);
	cc.col = NULL;
	cc.object = res == CODING_RES_ISSUES ? "issue" :
		res == CODING_RES_ITERATIONS ? "iteration" : "member";
	cc.key = cols[0].index->found[cols[0].index->key_slot];
	errcb.callback = convert_error_callback;
	errcb.arg = &cc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	for (i = 0; i < ncols; i++)
	{
		CodingColumn *col = &cols[i];
		int			idx = col->attnum - 1;
		cJSON	   *v;

		cc.col = col;
		switch (col->source)
		{
			case COLSRC_TEAM:
			case COLSRC_PROJECT:
				values[idx] = constant_value(col, col->source == COLSRC_TEAM ?
											 conn->team : conn->project);
				nulls[idx] = false;
				break;
			case COLSRC_RAW:
				values[idx] = convert_value(col, raw, &nulls[idx]);
				break;
			case COLSRC_FIELD:
				v = field_value(col);
				values[idx] = convert_value(col, v, &nulls[idx]);
				break;
		}
	}
	error_context_stack = errcb.previous;
}
