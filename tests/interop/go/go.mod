module weir.test/interop/go

go 1.22

require storj.io/drpc v1.1.0

require github.com/zeebo/errs v1.2.2 // indirect
