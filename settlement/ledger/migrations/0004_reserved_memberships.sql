-- 0004 is the memberships issue's migration (issue 16), built on another branch. This file
-- only holds its number so that the console's 0006 applies on this branch (the loader refuses
-- gaps). The integrator replaces it with the real 0004 when issue 16 is merged.
SELECT 1;
