using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Lutra.Core.Quants;

namespace Lutra.Gguf;

internal sealed record GgufHeader(
    uint Version, GgufMetadata Metadata, GgufTensorInfo[] Tensors, Dictionary<string, int> TensorIndex, uint Alignment,
    long HeaderLength, long DataStart);

/// <summary>
/// Parses and validates a GGUF header (formats.md §1.3) from a pointer to the whole file. Nothing is
/// allocated before the bytes it describes are known to exist, and each item read costs a bounded
/// multiple of its own encoded size, so a hostile header costs memory proportional to its real size.
/// Only the header is read; tensor data bytes are never touched.
/// </summary>
internal static unsafe class GgufHeaderReader
{
    public const int MinimumFileSize = 24; // magic + version + n_tensors + n_kv
    public const int MaxNameLength = 63;   // GGML_MAX_NAME - 1
    public const int MaxDims = 4;
    public const int MaxArrayDepth = 8;
    public const int MinKvBytes = 8 + 1 + 4 + 1;             // key length, ≥1 key byte, type, ≥1 value byte
    public const int MinTensorInfoBytes = 8 + 1 + 4 + 4 + 8; // name length, ≥1 name byte, n_dims, type, offset

    private static readonly string[] DimLeaves = ["ne[0]", "ne[1]", "ne[2]", "ne[3]"];
    private static readonly object BoxedTrue = true;
    private static readonly object BoxedFalse = false;

    public static GgufHeader Read(byte* p, long length)
    {
        if (length < MinimumFileSize)
            throw new GgufFormatException("magic", 0, $"file is {length} bytes, too small to be a GGUF file");
        var c = new Cursor(p, length);
        var magic = c.U32("magic");
        if (magic != GgufFile.Magic)
            throw new GgufFormatException("magic", 0, $"bad magic 0x{magic:X8}; not a GGUF file");
        var version = c.U32("version");
        if (version == 1)
            throw new GgufFormatException("version", 4, "GGUFv1 is no longer supported; re-convert the model with a current converter");
        if ((version & 0xFFFF) == 0 && version != 0)
            throw new GgufFormatException("version", 4, $"big-endian GGUF files are not supported (version field reads 0x{version:X8})");
        if (version is not (2 or 3))
            throw new GgufFormatException("version", 4, $"version {version} is not supported (expected 2 or 3)");

        var nTensors = c.I64("n_tensors");
        var nKv = c.I64("n_kv");
        if (nTensors < 0)
            throw new GgufFormatException("n_tensors", 8, $"negative tensor count {nTensors}");
        if (nKv < 0)
            throw new GgufFormatException("n_kv", 16, $"negative metadata count {nKv}");
        // Both counts must be plausible for the bytes that remain before anything is allocated for them.
        var remaining = (UInt128)(ulong)c.Remaining;
        if ((UInt128)(ulong)nKv * MinKvBytes > remaining)
            throw new GgufFormatException("n_kv", 16,
                $"{nKv} metadata entries need at least {MinKvBytes} bytes each but only {c.Remaining} bytes remain");
        if ((UInt128)(ulong)nTensors * MinTensorInfoBytes > remaining)
            throw new GgufFormatException("n_tensors", 8,
                $"{nTensors} tensor infos need at least {MinTensorInfoBytes} bytes each but only {c.Remaining} bytes remain");
        if ((UInt128)(ulong)nKv * MinKvBytes + (UInt128)(ulong)nTensors * MinTensorInfoBytes > remaining)
            throw new GgufFormatException("n_tensors", 8,
                $"{nKv} metadata entries and {nTensors} tensor infos cannot fit in the {c.Remaining} bytes that remain");

        var (metadata, alignment) = ReadMetadata(ref c, nKv);
        var (tensors, index) = ReadTensorInfos(ref c, nTensors, alignment, length);
        return new GgufHeader(version, metadata, tensors, index, alignment, c.Position, AlignUp(c.Position, alignment));
    }

    internal static long AlignUp(long position, uint alignment) =>
        (long)(((ulong)position + alignment - 1) / alignment * alignment);

    private static (GgufMetadata, uint) ReadMetadata(ref Cursor c, long nKv)
    {
        var metadata = new GgufMetadata();
        long alignmentTypeAt = -1;
        c.Scope = Scope.Kv;
        for (long i = 0; i < nKv; i++)
        {
            c.Entry = i;
            c.Key = null;
            var keyAt = c.Position;
            var keyBytes = c.StringSpan("key.length");
            if (keyBytes.IsEmpty)
                throw c.Fail("key", keyAt, "empty metadata key");
            var key = DecodeName(ref c, keyBytes, "key", keyAt);
            if (metadata.ContainsKey(key))
                throw c.Fail("key", keyAt, $"duplicate metadata key '{Shorten(key)}'");
            c.Key = key;
            var typeAt = c.Position;
            var type = c.U32("type");
            if (type > (uint)GgufValueType.Float64)
                throw c.Fail("type", typeAt, $"unknown metadata value type {type}");
            c.InValue = true;
            metadata.TryAdd(key, ReadValue(ref c, (GgufValueType)type));
            c.InValue = false;
            if (key == GgufFile.AlignmentKey)
                alignmentTypeAt = typeAt;
        }
        c.Key = null;

        var alignment = GgufFile.DefaultAlignment;
        if (metadata.TryGetValue(GgufFile.AlignmentKey, out var alignValue))
        {
            const string field = $"kv['{GgufFile.AlignmentKey}'].value";
            // llama.cpp aborts on any other type, so a writer can only have meant UINT32.
            if (alignValue.Type != GgufValueType.UInt32)
                throw new GgufFormatException(field, alignmentTypeAt, $"alignment has type {alignValue.TypeName}, expected UINT32");
            alignment = (uint)alignValue.Value;
            if (!BitOperations.IsPow2(alignment))
                throw new GgufFormatException(field, alignmentTypeAt + 4, $"alignment {alignment} is not a non-zero power of two");
        }
        return (metadata, alignment);
    }

    private static (GgufTensorInfo[], Dictionary<string, int>) ReadTensorInfos(ref Cursor c, long nTensors, uint alignment, long length)
    {
        c.Scope = Scope.TensorInfo;
        // Re-checked now that the metadata has consumed its share of the file.
        if ((UInt128)(ulong)nTensors * MinTensorInfoBytes > (ulong)c.Remaining)
            throw new GgufFormatException("n_tensors", 8,
                $"{nTensors} tensor infos need at least {MinTensorInfoBytes} bytes each but only {c.Remaining} bytes remain after the metadata");
        var pending = nTensors == 0 ? [] : new PendingTensor[nTensors];
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < pending.Length; i++)
        {
            c.Entry = i;
            var nameAt = c.Position;
            var nameBytes = c.StringSpan("name.length");
            if (nameBytes.IsEmpty)
                throw c.Fail("name", nameAt, "empty tensor name");
            if (nameBytes.Length > MaxNameLength)
                throw c.Fail("name", nameAt, $"tensor name is {nameBytes.Length} bytes; the limit is {MaxNameLength}");
            if (nameBytes.Contains((byte)0))
                throw c.Fail("name", nameAt, "tensor name contains a NUL byte");
            var name = DecodeName(ref c, nameBytes, "name", nameAt);
            if (!index.TryAdd(name, i))
                throw c.Fail("name", nameAt, $"duplicate tensor name '{name}'");

            var dimsAt = c.Position;
            var nDims = c.U32("n_dims");
            if (nDims > MaxDims)
                throw c.Fail("n_dims", dimsAt, $"tensor '{name}' has {nDims} dimensions; at most {MaxDims} are allowed");
            var shape = nDims == 0 ? [] : new long[nDims];
            // The product of the non-zero dimensions must fit in int64, so that every partial product
            // (element count, row count) does too; any zero dimension makes the tensor empty.
            var nonZeroProduct = (UInt128)1;
            var hasZero = false;
            for (var d = 0; d < shape.Length; d++)
            {
                var neAt = c.Position;
                var ne = c.I64(DimLeaves[d]);
                if (ne < 0)
                    throw c.Fail(DimLeaves[d], neAt, $"tensor '{name}' has negative dimension {ne}");
                shape[d] = ne;
                if (ne == 0)
                    hasZero = true;
                else if ((nonZeroProduct *= (ulong)ne) > long.MaxValue)
                    throw c.Fail(DimLeaves[d], neAt, $"tensor '{name}' element count overflows int64");
            }
            var elements = hasZero ? 0 : (long)nonZeroProduct;

            var typeAt = c.Position;
            var typeId = c.U32("type");
            var info = QuantTypes.TryGet((GgmlType)(int)typeId)
                ?? throw c.Fail("type", typeAt, $"tensor '{name}' has unknown or removed ggml type id {typeId}");
            var ne0 = shape.Length > 0 ? shape[0] : 1;
            if (ne0 % info.BlockSize != 0)
                throw c.Fail(shape.Length > 0 ? "ne[0]" : "n_dims", shape.Length > 0 ? dimsAt + 4 : dimsAt,
                    $"tensor '{name}' row length {ne0} is not a multiple of {info.Name}'s block size {info.BlockSize}");
            var bytes = (UInt128)(ulong)(elements / info.BlockSize) * (ulong)info.BlockBytes;
            if (bytes > long.MaxValue)
                throw c.Fail("ne", dimsAt + 4, $"tensor '{name}' byte size overflows int64");

            var offsetAt = c.Position;
            var offset = c.U64("offset");
            if (offset % alignment != 0)
                throw c.Fail("offset", offsetAt, $"tensor '{name}' offset {offset} is not a multiple of the alignment {alignment}");
            pending[i] = new PendingTensor(name, shape, info.Type, offset, (long)bytes, offsetAt);
        }

        var headerEnd = c.Position;
        var dataStart = AlignUp(headerEnd, alignment);
        if (pending.Length > 0 && dataStart > length)
            throw new GgufFormatException("data", headerEnd,
                $"the tensor data section would start at {dataStart}, past the end of the {length}-byte file");

        var tensors = new GgufTensorInfo[pending.Length];
        for (var i = 0; i < pending.Length; i++)
        {
            var t = pending[i];
            var start = (UInt128)(ulong)dataStart + t.Offset;
            var end = start + (ulong)t.ByteSize;
            if (end > (ulong)length)
                throw new GgufFormatException($"tensor_infos[{i}].offset", t.OffsetAt,
                    $"tensor '{t.Name}' data [{start}, {end}) is not within the {length}-byte file");
            tensors[i] = new GgufTensorInfo(t.Name, t.Shape, t.Type, t.Offset) { ByteSize = t.ByteSize, DataOffset = (long)start };
        }
        CheckNoOverlap(tensors, pending);
        return (tensors, index);
    }

    private static void CheckNoOverlap(GgufTensorInfo[] tensors, PendingTensor[] pending)
    {
        // Writers lay tensors out in info order, so sorting (and its allocation) is rarely needed.
        var order = IsSortedByStart(tensors) ? null : SortedByStart(tensors);
        var previous = -1;
        for (var k = 0; k < tensors.Length; k++)
        {
            var i = order is null ? k : order[k];
            if (tensors[i].ByteSize == 0)
                continue;
            if (previous >= 0 && tensors[i].DataOffset < tensors[previous].DataOffset + tensors[previous].ByteSize)
                throw new GgufFormatException($"tensor_infos[{i}].offset", pending[i].OffsetAt,
                    $"tensors '{tensors[previous].Name}' and '{tensors[i].Name}' overlap");
            previous = i;
        }
    }

    private static bool IsSortedByStart(GgufTensorInfo[] tensors)
    {
        for (var i = 1; i < tensors.Length; i++)
        {
            if (tensors[i].DataOffset < tensors[i - 1].DataOffset)
                return false;
        }
        return true;
    }

    private static int[] SortedByStart(GgufTensorInfo[] tensors)
    {
        var starts = new long[tensors.Length];
        var order = new int[tensors.Length];
        for (var i = 0; i < tensors.Length; i++)
        {
            starts[i] = tensors[i].DataOffset;
            order[i] = i;
        }
        Array.Sort(starts, order);
        return order;
    }

    private static GgufValue ReadValue(ref Cursor c, GgufValueType type)
    {
        switch (type)
        {
            case GgufValueType.UInt8: return new(GgufValueType.UInt8, c.U8("value"));
            case GgufValueType.Int8: return new(GgufValueType.Int8, (sbyte)c.U8("value"));
            case GgufValueType.UInt16: return new(GgufValueType.UInt16, c.U16("value"));
            case GgufValueType.Int16: return new(GgufValueType.Int16, (short)c.U16("value"));
            case GgufValueType.UInt32: return new(GgufValueType.UInt32, c.U32("value"));
            case GgufValueType.Int32: return new(GgufValueType.Int32, (int)c.U32("value"));
            case GgufValueType.Float32: return new(GgufValueType.Float32, BitConverter.UInt32BitsToSingle(c.U32("value")));
            case GgufValueType.Bool: return new(GgufValueType.Bool, c.U8("value") != 0 ? BoxedTrue : BoxedFalse);
            case GgufValueType.String: return new(GgufValueType.String, new GgufString(c.StringBytes("length")));
            case GgufValueType.UInt64: return new(GgufValueType.UInt64, c.U64("value"));
            case GgufValueType.Int64: return new(GgufValueType.Int64, (long)c.U64("value"));
            case GgufValueType.Float64: return new(GgufValueType.Float64, BitConverter.UInt64BitsToDouble(c.U64("value")));
            default: return ReadArray(ref c, 0);
        }
    }

    private static GgufValue ReadArray(ref Cursor c, int depth)
    {
        var elemAt = c.Position;
        if (depth >= MaxArrayDepth)
            throw c.Fail("element_type", elemAt, $"arrays nested deeper than {MaxArrayDepth} levels");
        var elemType = c.U32("element_type");
        var et = (GgufValueType)elemType;
        var size = GgufValue.ScalarSize(et);
        // Minimum encoded bytes per element: a scalar's size, a string's 8-byte length, an array's 12-byte head.
        var minPer = et switch
        {
            GgufValueType.String => 8,
            GgufValueType.Array => 12,
            _ when size > 0 => size,
            _ => throw c.Fail("element_type", elemAt, $"unknown array element type {elemType}"),
        };
        var countAt = c.Position;
        var count = c.U64("count");
        if ((UInt128)count * (ulong)minPer > (ulong)c.Remaining)
            throw c.Fail("count", countAt, $"array of {count} {GgufValue.TypeNameOf(et)} elements cannot fit in the {c.Remaining} bytes that remain");
        if (count * (ulong)minPer > int.MaxValue)
            throw c.Fail("count", countAt, $"array of {count} {GgufValue.TypeNameOf(et)} elements exceeds 2 GiB, which is not supported");
        var n = (int)count;
        object items = et switch
        {
            GgufValueType.UInt8 => c.Bytes(n, "").ToArray(),
            GgufValueType.Int8 => ToArray<sbyte>(c.Bytes(n, "")),
            GgufValueType.Bool => ReadBools(c.Bytes(n, "")),
            GgufValueType.UInt16 => ToArray<ushort>(c.Bytes(n * 2, "")),
            GgufValueType.Int16 => ToArray<short>(c.Bytes(n * 2, "")),
            GgufValueType.UInt32 => ToArray<uint>(c.Bytes(n * 4, "")),
            GgufValueType.Int32 => ToArray<int>(c.Bytes(n * 4, "")),
            GgufValueType.Float32 => ToArray<float>(c.Bytes(n * 4, "")),
            GgufValueType.UInt64 => ToArray<ulong>(c.Bytes(n * 8, "")),
            GgufValueType.Int64 => ToArray<long>(c.Bytes(n * 8, "")),
            GgufValueType.Float64 => ToArray<double>(c.Bytes(n * 8, "")),
            GgufValueType.String => ReadStrings(ref c, n, depth),
            _ => ReadArrays(ref c, n, depth),
        };
        return new GgufValue(GgufValueType.Array, items, et);
    }

    private static GgufString[] ReadStrings(ref Cursor c, int n, int depth)
    {
        if (n == 0)
            return [];
        var items = new GgufString[n];
        c.Depth = depth + 1;
        for (var i = 0; i < n; i++)
        {
            c.Path[depth] = i;
            items[i] = new GgufString(c.StringBytes("length"));
        }
        c.Depth = depth;
        return items;
    }

    private static GgufValue[] ReadArrays(ref Cursor c, int n, int depth)
    {
        if (n == 0)
            return [];
        var items = new GgufValue[n];
        for (var i = 0; i < n; i++)
        {
            c.Depth = depth + 1;
            c.Path[depth] = i;
            items[i] = ReadArray(ref c, depth + 1);
        }
        c.Depth = depth;
        return items;
    }

    private static bool[] ReadBools(ReadOnlySpan<byte> raw)
    {
        if (raw.IsEmpty)
            return [];
        var items = new bool[raw.Length];
        for (var i = 0; i < raw.Length; i++)
            items[i] = raw[i] != 0;
        return items;
    }

    // GGUF is little-endian; on a big-endian host the element bytes would need swapping.
    private static T[] ToArray<T>(ReadOnlySpan<byte> bytes) where T : unmanaged
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("Lutra reads GGUF on little-endian machines only");
        return MemoryMarshal.Cast<byte, T>(bytes).ToArray();
    }

    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    private static string DecodeName(ref Cursor c, ReadOnlySpan<byte> bytes, string leaf, long at)
    {
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw c.Fail(leaf, at, "name is not valid UTF-8");
        }
    }

    private static string Shorten(string text) => text.Length <= 80 ? text : string.Concat(text.AsSpan(0, 77), "...");

    private readonly record struct PendingTensor(string Name, long[] Shape, GgmlType Type, ulong Offset, long ByteSize, long OffsetAt);

    private enum Scope { Header, Kv, TensorInfo }

    [InlineArray(MaxArrayDepth)]
    private struct ArrayPath
    {
        private long _element;
    }

    /// <summary>
    /// Bounds-checked little-endian reader over the mapped file. It also tracks where in the header it is
    /// (entry, key, nested array indices) so that an error can name the field, without formatting any
    /// name while the file is valid.
    /// </summary>
    private ref struct Cursor(byte* p, long length)
    {
        private readonly byte* _p = p;
        private readonly long _length = length;
        public long Position;
        public Scope Scope;
        public long Entry;
        public string? Key;
        public bool InValue;
        public ArrayPath Path;
        public int Depth;

        public readonly long Remaining => _length - Position;

        public readonly GgufFormatException Fail(string leaf, long at, string problem) => new(FieldName(leaf), at, problem);

        private readonly string FieldName(string leaf)
        {
            if (Scope == Scope.Header)
                return leaf;
            var sb = new StringBuilder();
            if (Scope == Scope.TensorInfo)
                sb.Append("tensor_infos[").Append(Entry).Append(']');
            else if (Key is null)
                sb.Append("kv[").Append(Entry).Append(']');
            else
                sb.Append("kv['").Append(Shorten(Key)).Append(InValue ? "'].value" : "']");
            for (var d = 0; d < Depth; d++)
                sb.Append('[').Append(Path[d]).Append(']');
            if (leaf.Length > 0)
                sb.Append('.').Append(leaf);
            return sb.ToString();
        }

        private ReadOnlySpan<byte> Take(int n, string leaf)
        {
            if (n > Remaining)
                throw Fail(leaf, Position, $"needs {n} bytes but only {Remaining} remain (truncated file?)");
            var span = new ReadOnlySpan<byte>(_p + Position, n);
            Position += n;
            return span;
        }

        public byte U8(string leaf) => Take(1, leaf)[0];
        public ushort U16(string leaf) => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, leaf));
        public uint U32(string leaf) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, leaf));
        public ulong U64(string leaf) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, leaf));
        public long I64(string leaf) => BinaryPrimitives.ReadInt64LittleEndian(Take(8, leaf));

        public ReadOnlySpan<byte> Bytes(int n, string leaf) => Take(n, leaf);

        /// <summary>A gguf_string's bytes, in place; <paramref name="lengthLeaf"/> names its length field.</summary>
        public ReadOnlySpan<byte> StringSpan(string lengthLeaf)
        {
            var at = Position;
            var len = U64(lengthLeaf);
            if (len > (ulong)Remaining)
                throw Fail(lengthLeaf, at, $"string length {len} exceeds the {Remaining} bytes that remain");
            if (len > int.MaxValue)
                throw Fail(lengthLeaf, at, $"string length {len} exceeds 2 GiB, which is not supported");
            return Take((int)len, lengthLeaf);
        }

        public byte[] StringBytes(string lengthLeaf)
        {
            var span = StringSpan(lengthLeaf);
            return span.IsEmpty ? [] : span.ToArray();
        }
    }
}
