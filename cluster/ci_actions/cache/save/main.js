process.argv[2] = "cache-save";
require("./shim.js");
