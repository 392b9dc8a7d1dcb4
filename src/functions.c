/*-------------------------------------------------------------------------
 * functions.c
 *		SQL-callable functions of coding_fdw: test_connection().
 *
 * test_connection runs the checks a user needs when a server does not work,
 * in order (team, token, project, then read permission per resource), and
 * says for each what to fix.  A check that cannot run because an earlier
 * one failed reports ok = NULL ("not checked") rather than a second error.
 *-------------------------------------------------------------------------
 */
#include "coding_fdw.h"

#include "access/htup_details.h"
#include "catalog/pg_foreign_server.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(coding_test_connection);

/* Where test_connection's rows go. */
typedef struct CheckOutput
{
	Tuplestorestate *store;
	TupleDesc	desc;
} CheckOutput;

/*
 * emit
 *		Add one row; ok is 1 (passed), 0 (failed) or -1 (not checked).
 */
static void
emit(CheckOutput *out, const char *check, int ok, const char *detail)
{
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	values[0] = CStringGetTextDatum(check);
	if (ok < 0)
		nulls[1] = true;
	else
		values[1] = BoolGetDatum(ok == 1);
	values[2] = CStringGetTextDatum(detail);
	tuplestore_putvalues(out->store, out->desc, values, nulls);
}

/* failure_text: what Coding or the network said, in one phrase. */
static char *
failure_text(CodingResult *r)
{
	if (r->code)
		return psprintf("Coding error %s: %s", r->code,
						r->message && r->message[0] ? r->message : "(no message)");
	if (r->transport_error)
		return pstrdup(r->transport_error);
	return pstrdup("unknown failure");
}

/* json_count: an integer member of Response.Data, -1 if absent. */
static double
data_count(cJSON *resp, const char *name)
{
	cJSON	   *data = cJSON_GetObjectItemCaseSensitive(resp, "Data");
	cJSON	   *v = cJSON_GetObjectItemCaseSensitive(data, name);

	return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/*
 * check_read
 *		One permission check: read a one-row page of a resource.
 */
static void
check_read(CheckOutput *out, CodingConnInfo *conn, const char *check,
		   const char *action, cJSON *body, const char *count_field,
		   const char *noun)
{
	CodingResult r;

	coding_call_noerror(conn, action, body, NULL, &r);
	if (r.errclass == CODING_OK)
	{
		double		n = data_count(r.response, count_field);

		emit(out, check, 1, n >= 0 ?
			 psprintf("readable: %.0f %s", n, noun) : "readable");
	}
	else if (r.errclass == CODING_ERR_PERMISSION)
		emit(out, check, 0,
			 psprintf("the token may not read %s (%s): give it read access to the project's %s in Coding",
					  noun, failure_text(&r), noun));
	else
		emit(out, check, 0, psprintf("%s failed: %s", action, failure_text(&r)));
}

/*
 * coding_test_connection
 *		test_connection(server name) returns table(check, ok, detail).
 */
Datum
coding_test_connection(PG_FUNCTION_ARGS)
{
	Name		servername = PG_GETARG_NAME(0);
	ForeignServer *server = GetForeignServerByName(NameStr(*servername), false);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CodingConnInfo *conn;
	CheckOutput out;
	CodingResult r;
	AclResult	aclresult;
	bool		reached;
	bool		token_ok;
	double		project_id = -1;
	cJSON	   *body;

	aclresult = pg_foreign_server_aclcheck(server->serverid, GetUserId(), ACL_USAGE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FOREIGN_SERVER, server->servername);

	InitMaterializedSRF(fcinfo, 0);
	out.store = rsinfo->setResult;
	out.desc = rsinfo->setDesc;

	conn = coding_get_conn_info(server->serverid, GetUserId(), InvalidOid);
	/* a diagnosis should be quick: one retry at most */
	conn->max_retries = Min(conn->max_retries, 1);

	/* 1. team: the endpoint answers like Coding (even without a token) */
	coding_call_noerror(conn, "DescribeCodingCurrentUser", cJSON_CreateObject(),
						NULL, &r);
	reached = r.errclass != CODING_ERR_NETWORK && r.errclass != CODING_ERR_MALFORMED;
	if (r.errclass == CODING_ERR_NETWORK)
		emit(&out, "team", 0,
			 psprintf("cannot reach %s (%s): check the team option (NAME in https://NAME.coding.net/) and api_url",
					  conn->api_url, failure_text(&r)));
	else if (r.errclass == CODING_ERR_MALFORMED)
		emit(&out, "team", 0,
			 psprintf("%s answered, but not like Coding's OpenAPI (%s): check api_url",
					  conn->api_url, failure_text(&r)));
	else
		emit(&out, "team", 1, psprintf("reached %s", conn->api_url));

	/* 2. token: accepted, and whose it is */
	token_ok = false;
	if (conn->auth_header == NULL)
		emit(&out, "token", 0,
			 psprintf("no token: CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (token '...')",
					  quote_identifier(conn->servername)));
	else if (!reached)
		emit(&out, "token", -1, r.errclass == CODING_ERR_NETWORK ?
			 "not checked: Coding is unreachable" :
			 "not checked: api_url does not answer like Coding");
	else if (r.errclass == CODING_OK)
	{
		cJSON	   *user = cJSON_GetObjectItemCaseSensitive(r.response, "User");
		cJSON	   *name = cJSON_GetObjectItemCaseSensitive(user, "Name");
		cJSON	   *gk = cJSON_GetObjectItemCaseSensitive(user, "GlobalKey");

		token_ok = true;
		emit(&out, "token", 1,
			 psprintf("accepted: user %s (GlobalKey %s)%s",
					  cJSON_IsString(name) ? coding_json_scalar_text(name) : "?",
					  cJSON_IsString(gk) ? coding_json_scalar_text(gk) : "?",
					  conn->token_on_server ?
					  "; the token is stored on the server, where every role can read it: move it to a user mapping" : ""));
	}
	else if (r.errclass == CODING_ERR_AUTH)
		emit(&out, "token", 0,
			 psprintf("Coding rejected the token (%s): create a new personal access token in Coding, or use token_type 'bearer' for an OAuth access token",
					  failure_text(&r)));
	else
		emit(&out, "token", 0, psprintf("DescribeCodingCurrentUser failed: %s",
										failure_text(&r)));

	/* 3. project */
	if (conn->project == NULL)
		emit(&out, "project", -1,
			 "not checked: the server has no project option (each foreign table sets its own)");
	else if (!token_ok)
		emit(&out, "project", -1, "not checked: needs an accepted token");
	else
	{
		cJSON	   *project;

		body = cJSON_CreateObject();
		cJSON_AddStringToObject(body, "ProjectName", conn->project);
		coding_call_noerror(conn, "DescribeProjectByName", body, NULL, &r);
		project = r.errclass == CODING_OK ?
			cJSON_GetObjectItemCaseSensitive(r.response, "Project") : NULL;
		if (cJSON_IsObject(project))
		{
			cJSON	   *dn = cJSON_GetObjectItemCaseSensitive(project, "DisplayName");
			cJSON	   *id = cJSON_GetObjectItemCaseSensitive(project, "Id");

			project_id = cJSON_IsNumber(id) ? id->valuedouble : -1;
			emit(&out, "project", 1,
				 psprintf("found: %s (id %.0f)",
						  cJSON_IsString(dn) ? coding_json_scalar_text(dn) : conn->project,
						  project_id));
		}
		else if (r.errclass == CODING_OK || r.errclass == CODING_ERR_NOT_FOUND)
			emit(&out, "project", 0,
				 psprintf("team %s has no project named \"%s\": use the name in https://%s.coding.net/p/NAME, not the display name",
						  conn->team, conn->project, conn->team));
		else
			emit(&out, "project", 0, psprintf("DescribeProjectByName failed: %s",
											  failure_text(&r)));
	}

	/* 4-6. read permission per resource */
	if (project_id < 0)
	{
		const char *why = conn->project == NULL ? "not checked: no project" :
			"not checked: needs an accepted token and an existing project";

		emit(&out, "issues", -1, why);
		emit(&out, "iterations", -1, why);
		emit(&out, "project_members", -1, why);
	}
	else
	{
		body = cJSON_CreateObject();
		cJSON_AddStringToObject(body, "ProjectName", conn->project);
		cJSON_AddStringToObject(body, "IssueType", "ALL");
		cJSON_AddNumberToObject(body, "PageNumber", 1);
		cJSON_AddNumberToObject(body, "PageSize", 1);
		cJSON_AddTrueToObject(body, "ShowSubIssues");
		check_read(&out, conn, "issues", "DescribeIssueListWithPage", body,
				   "TotalCount", "issues");

		body = cJSON_CreateObject();
		cJSON_AddStringToObject(body, "ProjectName", conn->project);
		cJSON_AddNumberToObject(body, "Offset", 0);
		cJSON_AddNumberToObject(body, "Limit", 1);
		check_read(&out, conn, "iterations", "DescribeIterationList", body,
				   "TotalRow", "iterations");

		body = cJSON_CreateObject();
		cJSON_AddNumberToObject(body, "ProjectId", project_id);
		cJSON_AddNumberToObject(body, "PageNumber", 1);
		cJSON_AddNumberToObject(body, "PageSize", 1);
		check_read(&out, conn, "project_members", "DescribeProjectMembers", body,
				   "TotalCount", "members");
	}
	return (Datum) 0;
}
