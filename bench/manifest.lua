-- wrk script: GET a manifest by tag with the Accept header container
-- clients send. HEAD is measured with ab instead: wrk 4.1 waits for the body
-- that a HEAD answer's Content-Length announces, and never finishes.

wrk.method = "GET"
wrk.headers["Accept"] = table.concat({
   "application/vnd.oci.image.manifest.v1+json",
   "application/vnd.oci.image.index.v1+json",
   "application/vnd.docker.distribution.manifest.v2+json",
   "application/vnd.docker.distribution.manifest.list.v2+json",
}, ", ")
