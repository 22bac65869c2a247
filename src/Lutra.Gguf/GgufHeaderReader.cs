using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using Lutra.Core.Quants;

namespace Lutra.Gguf;

internal sealed record GgufHeader(uint Version, GgufMetadata Metadata, GgufTensorInfo[] Tensors, uint Alignment, long DataStart);

/// <summary>
/// Parses and validates a GGUF header from a pointer to the whole file. Nothing is allocated before the
/// bytes it describes are known to exist, so a hostile header costs memory proportional to its real size.
/// </summary>
internal static unsafe class GgufHeaderReader
{
    public const int MinimumFileSize = 24; // magic + version + n_tensors + n_kv
    public const int MaxNameLength = 63;   // GGML_MAX_NAME - 1
    public const int MaxDims = 4;
    public const int MaxArrayDepth = 8;
    private const int MinKvBytes = 8 + 1 + 4 + 1;          // key length, ≥1 key byte, type, ≥1 value byte
    private const int MinTensorInfoBytes = 8 + 1 + 4 + 4 + 8; // name length, ≥1 name byte, n_dims, type, offset

    public static GgufHeader Read(byte* p, long length)
    {
        var c = new Cursor(p, length);
        if (length < MinimumFileSize)
            throw new GgufFormatException("magic", 0, $"file is {length} bytes, too small to be a GGUF file");
        var magic = c.U32("magic");
        if (magic != GgufFile.Magic)
            throw new GgufFormatException("magic", 0, $"bad magic 0x{magic:X8}; not a GGUF file");
        var version = c.U32("version");
        if (version == 1)
            throw new GgufFormatException("version", 4, "GGUFv1 is no longer supported; re-convert the model with a current converter");
        if ((version & 0xFFFF) == 0 && version != 0)
            throw new GgufFormatException("version", 4, "big-endian GGUF files are not supported");
        if (version is not (2 or 3))
            throw new GgufFormatException("version", 4, $"version {version} is not supported (expected 2 or 3)");

        var nTensors = c.I64("n_tensors");
        var nKv = c.I64("n_kv");
        if (nTensors < 0)
            throw new GgufFormatException("n_tensors", 8, $"negative tensor count {nTensors}");
        if (nKv < 0)
            throw new GgufFormatException("n_kv", 16, $"negative metadata count {nKv}");
        // Both counts must be plausible for the bytes that remain before anything is allocated for them.
        var minBytes = (UInt128)(ulong)nKv * MinKvBytes + (UInt128)(ulong)nTensors * MinTensorInfoBytes;
        if (minBytes > (UInt128)(ulong)c.Remaining)
            throw new GgufFormatException("n_kv", 16,
                $"{nKv} metadata entries and {nTensors} tensors cannot fit in the {c.Remaining} bytes that remain");

        var metadata = new GgufMetadata();
        for (long i = 0; i < nKv; i++)
        {
            var at = c.Position;
            var key = c.String($"kv[{i}].key");
            if (key.Length == 0)
                throw new GgufFormatException($"kv[{i}].key", at, "empty metadata key");
            var keyText = Decode(key, $"kv[{i}].key", at);
            var typeAt = c.Position;
            var type = c.U32($"kv[{i}].type");
            var value = ReadValue(ref c, type, $"kv['{keyText}']", typeAt, 0);
            if (!metadata.TryAdd(keyText, value))
                throw new GgufFormatException($"kv[{i}].key", at, $"duplicate metadata key '{keyText}'");
        }

        var alignment = GgufFile.DefaultAlignment;
        if (metadata.TryGetValue(GgufFile.AlignmentKey, out var alignValue))
        {
            if (alignValue.Type != GgufValueType.UInt32)
                throw new GgufFormatException(GgufFile.AlignmentKey, 0, $"alignment has type {alignValue.Type}, expected UInt32");
            alignment = (uint)alignValue.Value;
            if (alignment == 0 || !BitOperations.IsPow2(alignment))
                throw new GgufFormatException(GgufFile.AlignmentKey, 0, $"alignment {alignment} is not a non-zero power of two");
        }

        var tensors = new GgufTensorInfo[nTensors];
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (long i = 0; i < nTensors; i++)
        {
            var f = $"tensor_infos[{i}]";
            var at = c.Position;
            var nameBytes = c.String($"{f}.name");
            var name = Decode(nameBytes, $"{f}.name", at);
            if (nameBytes.Length == 0)
                throw new GgufFormatException($"{f}.name", at, "empty tensor name");
            if (nameBytes.Length > MaxNameLength)
                throw new GgufFormatException($"{f}.name", at, $"tensor name is {nameBytes.Length} bytes; the limit is {MaxNameLength}");
            if (nameBytes.AsSpan().IndexOf((byte)0) >= 0)
                throw new GgufFormatException($"{f}.name", at, "tensor name contains a NUL byte");
            if (!names.Add(name))
                throw new GgufFormatException($"{f}.name", at, $"duplicate tensor name '{name}'");

            var dimsAt = c.Position;
            var nDims = c.U32($"{f}.n_dims");
            if (nDims > MaxDims)
                throw new GgufFormatException($"{f}.n_dims", dimsAt, $"tensor '{name}' has {nDims} dimensions; at most {MaxDims} are allowed");
            var shape = new long[nDims];
            for (var d = 0; d < nDims; d++)
            {
                var dAt = c.Position;
                shape[d] = c.I64($"{f}.ne[{d}]");
                if (shape[d] < 0)
                    throw new GgufFormatException($"{f}.ne[{d}]", dAt, $"tensor '{name}' has negative dimension {shape[d]}");
            }
            var typeAt = c.Position;
            var typeId = c.U32($"{f}.type");
            var info = QuantTypes.TryGet((GgmlType)typeId)
                ?? throw new GgufFormatException($"{f}.type", typeAt, $"tensor '{name}' has unknown or removed ggml type id {typeId}");
            var offsetAt = c.Position;
            var offset = c.U64($"{f}.offset");

            // Element count and byte size with overflow checks (a zero dimension means zero bytes).
            var elements = (UInt128)1;
            foreach (var d in shape)
            {
                elements *= (ulong)d;
                if (elements > long.MaxValue)
                    throw new GgufFormatException($"{f}.ne", dimsAt, $"tensor '{name}' element count overflows");
            }
            var ne0 = nDims > 0 ? shape[0] : 1;
            if (ne0 % info.BlockSize != 0)
                throw new GgufFormatException($"{f}.ne[0]", dimsAt + 4,
                    $"tensor '{name}' row length {ne0} is not a multiple of {info.Name}'s block size {info.BlockSize}");
            var bytes = (UInt128)elements / (ulong)info.BlockSize * (ulong)info.BlockBytes;
            if (bytes > long.MaxValue)
                throw new GgufFormatException($"{f}.ne", dimsAt, $"tensor '{name}' byte size overflows");
            if (offset % alignment != 0)
                throw new GgufFormatException($"{f}.offset", offsetAt, $"tensor '{name}' offset {offset} is not a multiple of the alignment {alignment}");

            tensors[i] = new GgufTensorInfo(name, shape, info.Type, offset) { ByteSize = (long)bytes, DataOffset = offsetAt };
        }

        var headerEnd = c.Position;
        var dataStart = (long)(((ulong)headerEnd + alignment - 1) / alignment * alignment);
        if (nTensors > 0 && dataStart > length)
            throw new GgufFormatException("data", headerEnd, $"data section would start at {dataStart}, past the end of the {length}-byte file");

        // Bounds and overlap of every tensor's data.
        for (var i = 0; i < tensors.Length; i++)
        {
            var t = tensors[i];
            var start = (UInt128)(ulong)dataStart + t.Offset;
            var end = start + (ulong)t.ByteSize;
            if (end > (ulong)length)
                throw new GgufFormatException($"tensor_infos[{i}].offset", t.DataOffset,
                    $"tensor '{t.Name}' data [{start}, {end}) is not within the {length}-byte file");
            tensors[i] = t with { DataOffset = (long)start };
        }
        var sorted = tensors.Where(t => t.ByteSize > 0).OrderBy(t => t.DataOffset).ToArray();
        for (var i = 1; i < sorted.Length; i++)
        {
            if (sorted[i].DataOffset < sorted[i - 1].DataOffset + sorted[i - 1].ByteSize)
                throw new GgufFormatException("tensor_infos.offset", sorted[i].DataOffset,
                    $"tensors '{sorted[i - 1].Name}' and '{sorted[i].Name}' overlap");
        }

        return new GgufHeader(version, metadata, tensors, alignment, dataStart);
    }

    private static GgufValue ReadValue(ref Cursor c, uint type, string field, long typeAt, int depth)
    {
        switch ((GgufValueType)type)
        {
            case GgufValueType.UInt8: return new(GgufValueType.UInt8, c.U8(field));
            case GgufValueType.Int8: return new(GgufValueType.Int8, (sbyte)c.U8(field));
            case GgufValueType.UInt16: return new(GgufValueType.UInt16, c.U16(field));
            case GgufValueType.Int16: return new(GgufValueType.Int16, (short)c.U16(field));
            case GgufValueType.UInt32: return new(GgufValueType.UInt32, c.U32(field));
            case GgufValueType.Int32: return new(GgufValueType.Int32, (int)c.U32(field));
            case GgufValueType.Float32: return new(GgufValueType.Float32, BitConverter.UInt32BitsToSingle(c.U32(field)));
            case GgufValueType.Bool: return new(GgufValueType.Bool, c.U8(field) != 0);
            case GgufValueType.String: return new(GgufValueType.String, new GgufString(c.String(field)));
            case GgufValueType.UInt64: return new(GgufValueType.UInt64, c.U64(field));
            case GgufValueType.Int64: return new(GgufValueType.Int64, (long)c.U64(field));
            case GgufValueType.Float64: return new(GgufValueType.Float64, BitConverter.UInt64BitsToDouble(c.U64(field)));
            case GgufValueType.Array:
                return ReadArray(ref c, field, depth);
            default:
                throw new GgufFormatException(field, typeAt, $"unknown metadata value type {type}");
        }
    }

    private static GgufValue ReadArray(ref Cursor c, string field, int depth)
    {
        if (depth >= MaxArrayDepth)
            throw new GgufFormatException(field, c.Position, $"arrays nested deeper than {MaxArrayDepth} levels");
        var elemAt = c.Position;
        var elemType = c.U32($"{field}.element_type");
        var countAt = c.Position;
        var count = c.U64($"{field}.count");
        var et = (GgufValueType)elemType;
        var size = GgufValue.ScalarSize(et);
        // Minimum bytes per element: scalars their size, strings their 8-byte length, arrays 12 bytes.
        var minPer = et switch
        {
            GgufValueType.String => 8,
            GgufValueType.Array => 12,
            _ when size > 0 => size,
            _ => throw new GgufFormatException($"{field}.element_type", elemAt, $"unknown array element type {elemType}"),
        };
        if ((UInt128)count * (ulong)minPer > (ulong)c.Remaining || count > int.MaxValue)
            throw new GgufFormatException($"{field}.count", countAt, $"array of {count} {et} elements does not fit in the {c.Remaining} bytes that remain");
        var n = (int)count;
        object items;
        switch (et)
        {
            case GgufValueType.UInt8: items = c.Bytes(n, field).ToArray(); break;
            case GgufValueType.Int8: items = MemoryMarshalCast<sbyte>(c.Bytes(n, field)); break;
            case GgufValueType.Bool:
            {
                var raw = c.Bytes(n, field);
                var b = new bool[n];
                for (var i = 0; i < n; i++) b[i] = raw[i] != 0;
                items = b;
                break;
            }
            case GgufValueType.UInt16: items = MemoryMarshalCast<ushort>(c.Bytes(n * 2, field)); break;
            case GgufValueType.Int16: items = MemoryMarshalCast<short>(c.Bytes(n * 2, field)); break;
            case GgufValueType.UInt32: items = MemoryMarshalCast<uint>(c.Bytes(n * 4, field)); break;
            case GgufValueType.Int32: items = MemoryMarshalCast<int>(c.Bytes(n * 4, field)); break;
            case GgufValueType.Float32: items = MemoryMarshalCast<float>(c.Bytes(n * 4, field)); break;
            case GgufValueType.UInt64: items = MemoryMarshalCast<ulong>(c.Bytes(checked(n * 8), field)); break;
            case GgufValueType.Int64: items = MemoryMarshalCast<long>(c.Bytes(checked(n * 8), field)); break;
            case GgufValueType.Float64: items = MemoryMarshalCast<double>(c.Bytes(checked(n * 8), field)); break;
            case GgufValueType.String:
            {
                var s = new GgufString[n];
                for (var i = 0; i < n; i++) s[i] = new GgufString(c.String($"{field}[{i}]"));
                items = s;
                break;
            }
            case GgufValueType.Array:
            {
                var a = new GgufValue[n];
                for (var i = 0; i < n; i++) a[i] = ReadArray(ref c, $"{field}[{i}]", depth + 1);
                items = a;
                break;
            }
            default:
                throw new GgufFormatException($"{field}.element_type", elemAt, $"unknown array element type {elemType}");
        }
        return new GgufValue(GgufValueType.Array, items, et);
    }

    // GGUF is little-endian; on a big-endian host the element bytes would need swapping.
    private static T[] MemoryMarshalCast<T>(ReadOnlySpan<byte> bytes) where T : unmanaged
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("Lutra reads GGUF on little-endian machines only");
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(bytes).ToArray();
    }

    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    private static string Decode(byte[] bytes, string field, long at)
    {
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw new GgufFormatException(field, at, "name is not valid UTF-8");
        }
    }

    /// <summary>Bounds-checked little-endian reader over the mapped file.</summary>
    private ref struct Cursor(byte* p, long length)
    {
        private readonly byte* _p = p;
        private readonly long _length = length;
        public long Position;

        public readonly long Remaining => _length - Position;

        private ReadOnlySpan<byte> Take(long n, string field)
        {
            if (n < 0 || n > Remaining)
                throw new GgufFormatException(field, Position, $"needs {n} bytes but only {Remaining} remain (truncated file?)");
            var span = new ReadOnlySpan<byte>(_p + Position, (int)n);
            Position += n;
            return span;
        }

        public byte U8(string field) => Take(1, field)[0];
        public ushort U16(string field) => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, field));
        public uint U32(string field) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, field));
        public ulong U64(string field) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, field));
        public long I64(string field) => BinaryPrimitives.ReadInt64LittleEndian(Take(8, field));

        public ReadOnlySpan<byte> Bytes(int n, string field) => Take(n, field);

        public byte[] String(string field)
        {
            var at = Position;
            var len = U64($"{field}.length");
            if (len > (ulong)Remaining || len > int.MaxValue)
            {
                Position = at;
                throw new GgufFormatException($"{field}.length", at, $"string length {len} exceeds the {Remaining - 8} bytes that remain");
            }
            return Take((long)len, field).ToArray();
        }
    }
}
