/*-------------------------------------------------------------------------
 * options.c
 *		Option validator, option lookup and GUCs of coding_fdw; _PG_init.
 *
 * Every option is checked where it is given, and a wrong one is named
 * with the list of valid ones, as postgres_fdw does.  Values are checked
 * by type and range; the token is checked but never echoed back.
 *-------------------------------------------------------------------------
 */
#include "coding_fdw.h"

#include "access/reloptions.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

PG_MODULE_MAGIC;

/* GUC: the largest response body accepted, in bytes. */
int			coding_max_response_size = 16 * 1024 * 1024;

/* Kinds of value checks an option gets. */
typedef enum OptionCheck
{
	OPT_TEXT,					/* non-empty text */
	OPT_FIELD,					/* a JSON key, or keys joined by dots */
	OPT_TEAM,					/* a host label */
	OPT_URL,					/* http(s) URL without credentials */
	OPT_TOKEN,					/* secret: never echoed */
	OPT_INT,					/* integer in [min, max] */
	OPT_REAL,					/* number in [OPT_REAL_MIN, max] */
	OPT_ENUM					/* one of the listed words */
} OptionCheck;

#define OPT_REAL_MIN 0.001			/* rate_limit: one call in 1,000 s */

/* One valid option: where it may be given and how its value is checked. */
typedef struct CodingOption
{
	const char *name;
	Oid			context;		/* catalog it may appear in */
	OptionCheck check;
	int			min;
	int			max;
	const char *const *words;	/* OPT_ENUM values */
} CodingOption;

static const char *const token_types[] = {"token", "bearer", NULL};
static const char *const resources[] = {"issues", "iterations", "project_members", NULL};
static const char *const issue_types[] = {"ALL", "DEFECT", "REQUIREMENT", "MISSION", "EPIC", NULL};

static const CodingOption coding_options[] = {
	{"team", ForeignServerRelationId, OPT_TEAM},
	{"project", ForeignServerRelationId, OPT_TEXT},
	{"api_url", ForeignServerRelationId, OPT_URL},
	{"token", ForeignServerRelationId, OPT_TOKEN},
	{"token_type", ForeignServerRelationId, OPT_ENUM, 0, 0, token_types},
	{"page_size", ForeignServerRelationId, OPT_INT, 1, CODING_MAX_PAGE_SIZE},
	{"request_timeout_ms", ForeignServerRelationId, OPT_INT, 1, 3600000},
	{"connect_timeout_ms", ForeignServerRelationId, OPT_INT, 1, 3600000},
	{"max_retries", ForeignServerRelationId, OPT_INT, 0, 100},
	{"rate_limit", ForeignServerRelationId, OPT_REAL, 0, 100000},
	{"token", UserMappingRelationId, OPT_TOKEN},
	{"token_type", UserMappingRelationId, OPT_ENUM, 0, 0, token_types},
	{"resource", ForeignTableRelationId, OPT_ENUM, 0, 0, resources},
	{"project", ForeignTableRelationId, OPT_TEXT},
	{"issue_type", ForeignTableRelationId, OPT_ENUM, 0, 0, issue_types},
	{"page_size", ForeignTableRelationId, OPT_INT, 1, CODING_MAX_PAGE_SIZE},
	{"field", AttributeRelationId, OPT_FIELD},
	{NULL}
};

PG_FUNCTION_INFO_V1(coding_fdw_validator);

/*
 * valid_options_list
 *		Comma-separated names of the options valid in "context", for hints.
 */
static char *
valid_options_list(Oid context)
{
	StringInfoData buf;
	const CodingOption *opt;

	initStringInfo(&buf);
	for (opt = coding_options; opt->name; opt++)
	{
		if (opt->context != context)
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, opt->name);
	}
	return buf.data;
}

/* words_list: "a, b, c" for an enum option's hint. */
static char *
words_list(const char *const *words)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (; *words; words++)
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", *words);
	return buf.data;
}

/*
 * parse_int_option
 *		Parse an integer option value; false if it is not a whole number.
 */
static bool
parse_int_option(const char *value, long *result)
{
	char	   *end;

	errno = 0;
	*result = strtol(value, &end, 10);
	while (*end == ' ')
		end++;
	return errno == 0 && end != value && *end == '\0';
}

/* option_value: the value of option "name" in a DefElem list, or NULL. */
static char *
option_value(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, name) == 0)
			return defGetString(def);
	}
	return NULL;
}

/*
 * check_option_value
 *		Raise a clear error if "def"'s value does not fit "opt".
 */
static void
check_option_value(const CodingOption *opt, DefElem *def)
{
	const char *value = defGetString(def);
	const char *p;

	switch (opt->check)
	{
		case OPT_TEXT:
		case OPT_FIELD:
			if (value[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("option \"%s\" must not be empty", opt->name)));
			for (p = value; *p; p++)
				if ((unsigned char) *p < 0x20)
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
							 errmsg("option \"%s\" must not contain control characters",
									opt->name)));
			if (opt->check == OPT_FIELD &&
				(value[0] == '.' || value[strlen(value) - 1] == '.' || strstr(value, "..") != NULL))
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"field\": \"%s\"", value),
						 errdetail("A field is a key of Coding's JSON, or keys joined by dots, as \"Iteration.Code\"; no key may be empty.")));
			break;
		case OPT_TEAM:
			for (p = value; *p; p++)
				if (!(isalnum((unsigned char) *p) || *p == '-'))
					break;
			if (value[0] == '\0' || *p != '\0' || value[0] == '-')
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"team\": \"%s\"", value),
						 errdetail("A team name is the first label of the team's address, as \"acme\" in https://acme.coding.net/: letters, digits and hyphens.")));
			break;
		case OPT_URL:
			{
				const char *authority;
				const char *slash;
				const char *at;

				if (strncmp(value, "http://", 7) == 0)
					authority = value + 7;
				else if (strncmp(value, "https://", 8) == 0)
					authority = value + 8;
				else
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
							 errmsg("invalid value for option \"api_url\": \"%s\"", value),
							 errdetail("The URL must start with http:// or https://.")));
				slash = strchr(authority, '/');
				at = strchr(authority, '@');
				if (at && (slash == NULL || at < slash))
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
							 errmsg("option \"api_url\" must not contain credentials"),
							 errhint("Put the token in a user mapping: CREATE USER MAPPING ... OPTIONS (token '...').")));
				if (*authority == '\0' || *authority == '/')
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
							 errmsg("invalid value for option \"api_url\": \"%s\"", value),
							 errdetail("The URL has no host.")));
				for (p = value; *p; p++)
					if ((unsigned char) *p <= 0x20)
						ereport(ERROR,
								(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
								 errmsg("option \"api_url\" must not contain spaces or control characters")));
			}
			break;
		case OPT_TOKEN:
			/* never quote the value: it is a secret */
			if (value[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("option \"token\" must not be empty")));
			for (p = value; *p; p++)
				if ((unsigned char) *p <= 0x20 || (unsigned char) *p == 0x7f)
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
							 errmsg("option \"token\" must not contain spaces or control characters"),
							 errhint("Give the token alone, without the \"token \" or \"Bearer \" prefix; token_type selects the prefix.")));
			break;
		case OPT_INT:
			{
				long		n;

				if (!parse_int_option(value, &n) || n < opt->min || n > opt->max)
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
							 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
							 errdetail("Valid values are whole numbers from %d to %d.",
									   opt->min, opt->max)));
			}
			break;
		case OPT_REAL:
			{
				char	   *end;
				double		d;

				errno = 0;
				d = strtod(value, &end);
				/* below a thousandth, the wait between calls would overflow */
				if (errno != 0 || end == value || *end != '\0' ||
					!(d >= OPT_REAL_MIN) || d > opt->max)
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
							 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
							 errdetail("Valid values are numbers from %g to %d.",
									   OPT_REAL_MIN, opt->max)));
			}
			break;
		case OPT_ENUM:
			{
				const char *const *w;

				for (w = opt->words; *w; w++)
					if (strcmp(*w, value) == 0)
						break;
				if (*w == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
							 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
							 errhint("Valid values are: %s.", words_list(opt->words))));
			}
			break;
	}
}

/*
 * coding_fdw_validator
 *		Validate the options of a server, user mapping, foreign table or
 *		column of coding_fdw.
 *
 * Also requires "team" on a server and "resource" on a foreign table, and
 * warns when a token is stored on a server, where every role can read it.
 */
Datum
coding_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	ListCell   *lc;
	bool		have_team = false;
	bool		have_resource = false;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		const CodingOption *opt;

		for (opt = coding_options; opt->name; opt++)
			if (opt->context == catalog && strcmp(opt->name, def->defname) == 0)
				break;

		if (opt->name == NULL)
		{
			char	   *valid = valid_options_list(catalog);

			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\"", def->defname),
					 valid[0] ? errhint("Valid options in this context are: %s.", valid)
					 : errhint("There are no valid options in this context.")));
		}

		check_option_value(opt, def);

		if (strcmp(def->defname, "team") == 0)
			have_team = true;
		if (strcmp(def->defname, "resource") == 0)
			have_resource = true;
		if (catalog == ForeignServerRelationId && strcmp(def->defname, "token") == 0)
			ereport(WARNING,
					(errmsg("a token stored on a server is readable by every role"),
					 errdetail("Server options are visible to all roles in pg_foreign_server."),
					 errhint("Store the token in a user mapping instead: CREATE USER MAPPING FOR CURRENT_USER SERVER ... OPTIONS (token '...').")));
	}

	if (catalog == ForeignServerRelationId && !have_team)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("required option \"team\" is missing"),
				 errhint("Give the team name, as \"acme\" in https://acme.coding.net/: OPTIONS (team 'acme').")));
	if (catalog == ForeignTableRelationId && !have_resource)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("required option \"resource\" is missing"),
				 errhint("Valid values are: %s.", words_list(resources))));
	/* the table's options come together: one that only issues read */
	if (catalog == ForeignTableRelationId &&
		option_value(options, "issue_type") != NULL &&
		strcmp(option_value(options, "resource"), "issues") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"issue_type\" is only valid for resource 'issues'"),
				 errhint("Drop it, or use OPTIONS (resource 'issues', issue_type '%s').",
						 option_value(options, "issue_type"))));

	PG_RETURN_VOID();
}

/*
 * user_mapping_options
 *		Options of the user mapping for userid (or PUBLIC) on serverid; NIL if
 *		there is none.  Unlike GetUserMapping it does not raise, because a
 *		token on the server makes a user mapping optional.
 */
static List *
user_mapping_options(Oid userid, Oid serverid)
{
	HeapTuple	tp;
	Datum		datum;
	bool		isnull;
	List	   *result = NIL;

	tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(userid),
						 ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tp))
		tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(InvalidOid),
							 ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tp))
		return NIL;

	datum = SysCacheGetAttr(USERMAPPINGUSERSERVER, tp,
							Anum_pg_user_mapping_umoptions, &isnull);
	if (!isnull)
		result = untransformRelOptions(datum);
	ReleaseSysCache(tp);
	return result;
}

/*
 * coding_get_conn_info
 *		Merge server, user mapping and (if given) foreign table options into a
 *		CodingConnInfo, in the current memory context.
 *
 * A table's project and page_size win over the server's; the user
 * mapping's token wins over the server's.
 */
CodingConnInfo *
coding_get_conn_info(Oid serverid, Oid userid, Oid foreigntableid)
{
	ForeignServer *server = GetForeignServer(serverid);
	CodingConnInfo *conn = palloc0(sizeof(CodingConnInfo));
	List	   *umopts = user_mapping_options(userid, serverid);
	char	   *token;
	char	   *token_type;
	char	   *v;

	conn->serverid = serverid;
	conn->servername = pstrdup(server->servername);
	conn->team = option_value(server->options, "team");
	if (conn->team == NULL)		/* only if the validator was bypassed */
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("server \"%s\" has no \"team\" option", server->servername)));
	conn->project = option_value(server->options, "project");

	v = option_value(server->options, "api_url");
	conn->api_url = v ? v : psprintf("https://%s.coding.net/open-api", conn->team);

	conn->page_size = CODING_MAX_PAGE_SIZE;
	if ((v = option_value(server->options, "page_size")) != NULL)
		conn->page_size = atoi(v);
	conn->request_timeout_ms = 30000;
	if ((v = option_value(server->options, "request_timeout_ms")) != NULL)
		conn->request_timeout_ms = atoi(v);
	conn->connect_timeout_ms = 10000;
	if ((v = option_value(server->options, "connect_timeout_ms")) != NULL)
		conn->connect_timeout_ms = atoi(v);
	conn->max_retries = 3;
	if ((v = option_value(server->options, "max_retries")) != NULL)
		conn->max_retries = atoi(v);
	conn->rate_limit = 15;
	if ((v = option_value(server->options, "rate_limit")) != NULL)
		conn->rate_limit = strtod(v, NULL);

	if (OidIsValid(foreigntableid))
	{
		ForeignTable *table = GetForeignTable(foreigntableid);

		if ((v = option_value(table->options, "project")) != NULL)
			conn->project = v;
		if ((v = option_value(table->options, "page_size")) != NULL)
			conn->page_size = atoi(v);
	}

	token = option_value(umopts, "token");
	token_type = option_value(umopts, "token_type");
	if (token == NULL)
	{
		token = option_value(server->options, "token");
		conn->token_on_server = (token != NULL);
	}
	if (token_type == NULL)
		token_type = option_value(server->options, "token_type");
	conn->bearer = token_type && strcmp(token_type, "bearer") == 0;
	if (token)
		conn->auth_header = psprintf("Authorization: %s %s",
									 conn->bearer ? "Bearer" : "token", token);
	return conn;
}

/* coding_resource_name: the option value naming a resource. */
const char *
coding_resource_name(CodingResource res)
{
	return resources[res];
}

/*
 * coding_get_table_info
 *		The resource and issue type of a foreign table.
 */
CodingTableInfo *
coding_get_table_info(Oid foreigntableid)
{
	ForeignTable *table = GetForeignTable(foreigntableid);
	CodingTableInfo *info = palloc0(sizeof(CodingTableInfo));
	char	   *v = option_value(table->options, "resource");
	int			i;

	if (v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("foreign table \"%s\" has no \"resource\" option",
						get_rel_name(foreigntableid))));
	for (i = 0; resources[i]; i++)
		if (strcmp(resources[i], v) == 0)
			info->resource = (CodingResource) i;

	v = option_value(table->options, "issue_type");
	info->issue_type = v ? v : "ALL";
	return info;
}

/*
 * coding_column_field_option
 *		The "field" option of a foreign table column, or NULL.
 */
char *
coding_column_field_option(Oid relid, AttrNumber attnum)
{
	return option_value(GetForeignColumnOptions(relid, attnum), "field");
}

/*
 * _PG_init
 *		Define GUCs and set up libcurl and cJSON.
 */
void
_PG_init(void)
{
	DefineCustomIntVariable("coding_fdw.max_response_size",
							"Largest Coding API response body accepted.",
							"A larger response is an error, which bounds what a broken or hostile endpoint can make a backend allocate: parsing takes about 17 times an answer's size, and a jsonb column made of millions of tiny values about 100 times.",
							&coding_max_response_size,
							16 * 1024 * 1024, 1024, INT_MAX,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("coding_fdw.enable_pushdown",
							 "Sends WHERE and ORDER BY clauses to Coding when it can apply them.",
							 "Off makes every scan list the whole resource and filter locally (for comparison and diagnosis).",
							 &coding_enable_pushdown,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("coding_fdw.fast_json",
							 "Parses Coding's answers with simdjson, falling back to cJSON for what it does not accept.",
							 "Off parses with cJSON only (for comparison and diagnosis); results are the same, only slower.",
							 &coding_fast_json,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	coding_client_init();
	coding_ratelimit_init();
	coding_sync_init();
	coding_webhook_init();
	MarkGUCPrefixReserved("coding_fdw");
}
