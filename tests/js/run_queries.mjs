// Runs queries through the official JavaScript ClickHouse client and prints, per query, its row count or its error.
//   node run_queries.mjs QUERIES.json   (a JSON list of {"name": ..., "sql": ...})
// The endpoint and key come from the environment: CLICKHOUSE_URL, CLICKHOUSE_USER, CLICKHOUSE_PASSWORD.
// Requests and answers are gzip-compressed, as the client does when asked to.
import { readFileSync } from "node:fs";
import { createClient } from "@clickhouse/client";

const queries = JSON.parse(readFileSync(process.argv[2], "utf8"));
const client = createClient({
  url: process.env.CLICKHOUSE_URL,
  username: process.env.CLICKHOUSE_USER,
  password: process.env.CLICKHOUSE_PASSWORD,
  compression: { request: true, response: true },
});
const results = { ping: (await client.ping()).success, queries: [] };
for (const { name, sql } of queries) {
  try {
    const answer = await client.query({ query: sql, format: "JSONEachRow" });
    results.queries.push({ name, rows: (await answer.json()).length, query_id: answer.query_id });
  } catch (error) {
    results.queries.push({ name, error: String(error.message ?? error), code: error.code ?? null });
  }
}
await client.close();
console.log(JSON.stringify(results));
