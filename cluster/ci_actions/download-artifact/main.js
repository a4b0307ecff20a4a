process.argv[2] = "download-artifact";
require("./shim.js");
