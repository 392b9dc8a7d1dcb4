--
-- import: IMPORT FOREIGN SCHEMA creates the three tables with the documented
-- columns, honours LIMIT TO / EXCEPT, sets the project, and refuses an
-- unknown project or options.
--
\getenv sim_url CODING_SIM_URL
CREATE SERVER coding FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', api_url :'sim_url', rate_limit '1000');
CREATE USER MAPPING FOR CURRENT_USER SERVER coding OPTIONS (token 'secret-token');

CREATE SCHEMA coding;
IMPORT FOREIGN SCHEMA backend FROM SERVER coding INTO coding;
\det+ coding.*
\d coding.issues
\d coding.iterations
\d coding.project_members

-- LIMIT TO and EXCEPT
CREATE SCHEMA only_issues;
IMPORT FOREIGN SCHEMA mobile LIMIT TO (issues) FROM SERVER coding INTO only_issues;
\det only_issues.*
CREATE SCHEMA no_issues;
IMPORT FOREIGN SCHEMA mobile EXCEPT (issues, iterations) FROM SERVER coding INTO no_issues;
\det no_issues.*

-- the imported tables read their project
SELECT count(*) > 0 AS has_rows FROM coding.issues;
SELECT count(*) > 0 AS has_members FROM no_issues.project_members;

-- errors
IMPORT FOREIGN SCHEMA nosuch FROM SERVER coding INTO only_issues;
IMPORT FOREIGN SCHEMA backend FROM SERVER coding INTO only_issues OPTIONS (issue_type 'DEFECT');
-- importing twice into one schema collides like any CREATE
IMPORT FOREIGN SCHEMA backend LIMIT TO (iterations) FROM SERVER coding INTO coding;

DROP SCHEMA coding, only_issues, no_issues CASCADE;
DROP SERVER coding CASCADE;
