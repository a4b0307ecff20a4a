process.argv[2] = "cache-restore";
require("./shim.js");
