process.argv[2] = "upload-artifact";
require("./shim.js");
