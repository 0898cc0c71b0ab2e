-- ibex_pg 0.2.0: existing databases move to the installed extension's version (the upgrade
-- scripts are ibex_pg/sql/ibex_pg--<from>--<to>.sql). A database created by this build already
-- has it, and the statement does nothing.
ALTER EXTENSION ibex_pg UPDATE;
