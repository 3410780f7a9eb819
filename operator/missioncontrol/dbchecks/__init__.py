"""RB-002's scheduled database checks: QueryPlanDiff (plans.py: a baseline plan per watched
statement, and the changes that matter) and IndexRecommendations (indexes.py: an index for a
sequential scan that filters on unindexed columns, confirmed by HypoPG). Pure logic here;
reading the database is explain.py. Nothing here ever executes DDL."""
