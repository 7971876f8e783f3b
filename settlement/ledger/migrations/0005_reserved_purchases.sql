-- 0005 is the purchases issue's migration (issue 17), built on another branch. This file only
-- holds its number so that the console's 0006 applies on this branch (the loader refuses
-- gaps). The integrator replaces it with the real 0005 when issue 17 is merged.
SELECT 1;
