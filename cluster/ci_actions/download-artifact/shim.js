// Runs one stand-in command of standin.py with the host's Python (act runs node actions on the host).
// CLOUDMART_CI_PYTHON and CLOUDMART_CI_STANDIN are set by cluster.ci.run_workflow.
const { spawnSync } = require("child_process");
const python = process.env.CLOUDMART_CI_PYTHON || "python3";
const script = process.env.CLOUDMART_CI_STANDIN;
if (!script) {
  console.log("::error::stand-in actions run only through cluster.ci.run_workflow (CLOUDMART_CI_STANDIN is unset)");
  process.exit(1);
}
const r = spawnSync(python, [script, process.argv[2]], { stdio: "inherit", env: process.env });
process.exit(r.status === null ? 1 : r.status);
