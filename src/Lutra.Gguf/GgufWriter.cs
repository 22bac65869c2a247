using System.Numerics;
using System.Runtime.InteropServices;
using System.Text;
using Lutra.Core.Quants;

namespace Lutra.Gguf;

/// <summary>
/// Writes a GGUF file: the metadata in insertion order, then the tensor infos, then each tensor's data
/// in info order, every tensor padded with zeros to <c>general.alignment</c> (default 32), so offsets are
/// the running padded sum — the layout gguf-py and ggml write and llama.cpp's strict reader expects.
/// Tensor data comes from memory, a stream, or a callback that writes it, so large tensors can be
/// produced while writing without holding the whole file in memory.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<PlannedTensor> _tensors = [];
    private readonly Dictionary<string, int> _tensorIndex = new(StringComparer.Ordinal);

    /// <summary>Metadata written in this order. Set <c>general.alignment</c> (UINT32) to change the alignment.</summary>
    public GgufMetadata Metadata { get; } = new();

    /// <summary>GGUF version written to the header: 3 (default) or 2, which has the identical layout.</summary>
    public uint Version
    {
        get;
        set => field = value is 2 or 3 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "GGUF version must be 2 or 3");
    } = 3;

    /// <summary>Tensors added so far, in the order they will be written (offsets are assigned when writing).</summary>
    public int TensorCount => _tensors.Count;

    /// <summary>Adds a tensor whose bytes are in memory (kept by reference until written).</summary>
    public void AddTensor(string name, ReadOnlySpan<long> shape, GgmlType type, ReadOnlyMemory<byte> data)
    {
        var byteSize = ByteSizeOf(name, shape, type);
        if (data.Length != byteSize)
            throw new ArgumentException($"tensor '{name}' needs {byteSize} bytes but {data.Length} were given", nameof(data));
        Add(name, shape, type, byteSize, destination => destination.Write(data.Span));
    }

    /// <summary>
    /// Adds a tensor whose bytes are read from <paramref name="data"/> at write time, from its current
    /// position; exactly the tensor's byte size is read. The caller keeps the stream open until written.
    /// </summary>
    public void AddTensor(string name, ReadOnlySpan<long> shape, GgmlType type, Stream data)
    {
        ArgumentNullException.ThrowIfNull(data);
        var byteSize = ByteSizeOf(name, shape, type);
        Add(name, shape, type, byteSize, destination => CopyExactly(name, data, destination, byteSize));
    }

    /// <summary>
    /// Adds a tensor whose bytes a callback writes at write time (e.g. quantizing row by row). The callback
    /// must write exactly the tensor's byte size: more is refused at once, fewer fails after it returns.
    /// </summary>
    public void AddTensor(string name, ReadOnlySpan<long> shape, GgmlType type, Action<Stream> writeData)
    {
        ArgumentNullException.ThrowIfNull(writeData);
        var byteSize = ByteSizeOf(name, shape, type);
        Add(name, shape, type, byteSize, writeData);
    }

    /// <summary>
    /// A writer holding <paramref name="source"/>'s version, metadata and tensors, with data read from
    /// its map at write time: keep <paramref name="source"/> open until the copy has been written.
    /// </summary>
    public static GgufWriter From(GgufFile source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var writer = new GgufWriter { Version = source.Version };
        foreach (var (key, value) in source.Metadata)
            writer.Metadata.Set(key, value);
        foreach (var tensor in source.Tensors)
        {
            var t = tensor;
            writer.Add(t.Name, t.Shape, t.Type, t.ByteSize, destination => CopyFromMap(source, t, destination));
        }
        return writer;
    }

    /// <summary>The alignment the file will use: <c>general.alignment</c> if set, else 32.</summary>
    public uint Alignment
    {
        get
        {
            if (!Metadata.TryGetValue(GgufFile.AlignmentKey, out var v))
                return GgufFile.DefaultAlignment;
            if (v.Type != GgufValueType.UInt32 || v.Value is not uint a || !BitOperations.IsPow2(a))
                throw new InvalidOperationException($"{GgufFile.AlignmentKey} must be a UINT32 power of two, not {v.TypeName} {v}");
            return a;
        }
    }

    /// <summary>
    /// Writes the file atomically: into a temporary file in the same directory, flushed to disk, then
    /// renamed over <paramref name="path"/>. On any failure the temporary file is deleted and an existing
    /// file at <paramref name="path"/> is left untouched.
    /// </summary>
    public void Write(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        var directory = System.IO.Path.GetDirectoryName(full)
            ?? throw new ArgumentException($"'{path}' has no parent directory", nameof(path));
        Validate();
        var temp = System.IO.Path.Combine(directory, $".{System.IO.Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                WriteTo(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try
            {
                File.Delete(temp);
            }
            catch (IOException)
            {
                // The original error matters more than a leftover temporary file.
            }
            catch (UnauthorizedAccessException)
            {
            }
            throw;
        }
    }

    /// <summary>Writes the whole file to <paramref name="destination"/> (which needs no seeking).</summary>
    public void WriteTo(Stream destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("Lutra writes GGUF on little-endian machines only");
        var alignment = Validate();
        var counter = new CountingStream(destination);
        using (var w = new BinaryWriter(counter, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(GgufFile.Magic);
            w.Write(Version);
            w.Write((ulong)_tensors.Count);
            w.Write((ulong)Metadata.Count);
            foreach (var (key, value) in Metadata)
            {
                WriteString(w, Encoding.UTF8.GetBytes(key));
                w.Write((uint)value.Type);
                WriteValue(w, value);
            }
            ulong offset = 0;
            foreach (var t in _tensors)
            {
                WriteString(w, Encoding.UTF8.GetBytes(t.Name));
                w.Write((uint)t.Shape.Length);
                foreach (var ne in t.Shape)
                    w.Write(ne);
                w.Write((uint)t.Type);
                w.Write(offset);
                offset += (ulong)GgufHeaderReader.AlignUp(t.ByteSize, alignment);
            }
        }
        // A file without tensors ends with its header, as gguf-py's vocab-only files do.
        if (_tensors.Count == 0)
            return;
        WritePadding(counter, alignment);
        foreach (var t in _tensors)
        {
            var data = new CountingStream(counter, t.Name, t.ByteSize);
            t.WriteData(data);
            if (data.Count != t.ByteSize)
                throw new InvalidOperationException($"tensor '{t.Name}' wrote {data.Count} bytes; it needs {t.ByteSize}");
            WritePadding(counter, alignment);
        }
        counter.Flush();
    }

    private static void WritePadding(CountingStream stream, uint alignment)
    {
        var pad = (int)(GgufHeaderReader.AlignUp(stream.Count, alignment) - stream.Count);
        if (pad == 0)
            return;
        Span<byte> zeros = pad <= 256 ? stackalloc byte[pad] : new byte[pad];
        zeros.Clear();
        stream.Write(zeros);
    }

    private static void WriteString(BinaryWriter w, ReadOnlySpan<byte> bytes)
    {
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, GgufValue value)
    {
        switch (value.Value)
        {
            case byte v: w.Write(v); break;
            case sbyte v: w.Write(v); break;
            case ushort v: w.Write(v); break;
            case short v: w.Write(v); break;
            case uint v: w.Write(v); break;
            case int v: w.Write(v); break;
            case float v: w.Write(BitConverter.SingleToUInt32Bits(v)); break;
            case bool v: w.Write((byte)(v ? 1 : 0)); break;
            case GgufString v: WriteString(w, v.Bytes); break;
            case ulong v: w.Write(v); break;
            case long v: w.Write(v); break;
            case double v: w.Write(BitConverter.DoubleToUInt64Bits(v)); break;
            case Array items: WriteArray(w, value.ElementType, items); break;
            default: throw new InvalidOperationException($"unexpected metadata value {value.Value.GetType()}");
        }
    }

    private static void WriteArray(BinaryWriter w, GgufValueType elementType, Array items)
    {
        w.Write((uint)elementType);
        w.Write((ulong)items.Length);
        switch (items)
        {
            case byte[] a: w.Write(a); break;
            case sbyte[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case bool[] a: foreach (var b in a) w.Write((byte)(b ? 1 : 0)); break;
            case ushort[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case short[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case uint[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case int[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case float[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case ulong[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case long[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case double[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case GgufString[] a: foreach (var s in a) WriteString(w, s.Bytes); break;
            case GgufValue[] a: foreach (var inner in a) WriteArray(w, inner.ElementType, (Array)inner.Value); break;
            default: throw new InvalidOperationException($"unexpected metadata array {items.GetType()}");
        }
    }

    /// <summary>Checks everything the reader would reject, before a byte is written; returns the alignment.</summary>
    private uint Validate()
    {
        foreach (var (key, value) in Metadata)
        {
            if (key.Length == 0)
                throw new InvalidOperationException("metadata keys must not be empty");
            CheckValue(key, value, 0);
        }
        return Alignment;
    }

    private static void CheckValue(string key, GgufValue value, int depth)
    {
        var ok = value.Type switch
        {
            GgufValueType.UInt8 => value.Value is byte,
            GgufValueType.Int8 => value.Value is sbyte,
            GgufValueType.UInt16 => value.Value is ushort,
            GgufValueType.Int16 => value.Value is short,
            GgufValueType.UInt32 => value.Value is uint,
            GgufValueType.Int32 => value.Value is int,
            GgufValueType.Float32 => value.Value is float,
            GgufValueType.Bool => value.Value is bool,
            GgufValueType.String => value.Value is GgufString,
            GgufValueType.UInt64 => value.Value is ulong,
            GgufValueType.Int64 => value.Value is long,
            GgufValueType.Float64 => value.Value is double,
            GgufValueType.Array => IsArrayOf(value.Value, value.ElementType),
            _ => false,
        };
        if (!ok)
            throw new InvalidOperationException(
                $"metadata key '{key}' is declared {value.TypeName} but holds a {value.Value.GetType().Name}");
        if (value.Type == GgufValueType.Array && value.ElementType == GgufValueType.Array)
        {
            if (depth + 1 >= GgufHeaderReader.MaxArrayDepth)
                throw new InvalidOperationException($"metadata key '{key}' nests arrays deeper than {GgufHeaderReader.MaxArrayDepth} levels");
            foreach (var inner in (GgufValue[])value.Value)
            {
                if (inner.Type != GgufValueType.Array)
                    throw new InvalidOperationException($"metadata key '{key}' is an array of arrays holding a {inner.TypeName}");
                CheckValue(key, inner, depth + 1);
            }
        }
    }

    private static bool IsArrayOf(object items, GgufValueType elementType) => elementType switch
    {
        GgufValueType.UInt8 => items is byte[],
        GgufValueType.Int8 => items is sbyte[],
        GgufValueType.UInt16 => items is ushort[],
        GgufValueType.Int16 => items is short[],
        GgufValueType.UInt32 => items is uint[],
        GgufValueType.Int32 => items is int[],
        GgufValueType.Float32 => items is float[],
        GgufValueType.Bool => items is bool[],
        GgufValueType.String => items is GgufString[],
        GgufValueType.UInt64 => items is ulong[],
        GgufValueType.Int64 => items is long[],
        GgufValueType.Float64 => items is double[],
        GgufValueType.Array => items is GgufValue[],
        _ => false,
    };

    /// <summary>Validates a tensor the way the reader will, and returns its byte size.</summary>
    private long ByteSizeOf(string name, ReadOnlySpan<long> shape, GgmlType type)
    {
        ArgumentNullException.ThrowIfNull(name);
        var nameBytes = Encoding.UTF8.GetByteCount(name);
        if (nameBytes is 0 or > GgufHeaderReader.MaxNameLength || name.Contains('\0', StringComparison.Ordinal))
            throw new ArgumentException($"tensor name '{name}' must be 1 to {GgufHeaderReader.MaxNameLength} UTF-8 bytes without NUL", nameof(name));
        if (_tensorIndex.ContainsKey(name))
            throw new ArgumentException($"tensor '{name}' was already added", nameof(name));
        if (shape.Length > GgufHeaderReader.MaxDims)
            throw new ArgumentException($"tensor '{name}' has {shape.Length} dimensions; at most {GgufHeaderReader.MaxDims} are allowed", nameof(shape));
        var info = QuantTypes.TryGet(type)
            ?? throw new ArgumentException($"tensor '{name}' has unknown or removed ggml type id {(int)type}", nameof(type));
        var product = (UInt128)1;
        var hasZero = false;
        foreach (var ne in shape)
        {
            if (ne < 0)
                throw new ArgumentException($"tensor '{name}' has negative dimension {ne}", nameof(shape));
            if (ne == 0)
                hasZero = true;
            else if ((product *= (ulong)ne) > long.MaxValue)
                throw new ArgumentException($"tensor '{name}' element count overflows int64", nameof(shape));
        }
        var ne0 = shape.Length > 0 ? shape[0] : 1;
        if (ne0 % info.BlockSize != 0)
            throw new ArgumentException($"tensor '{name}' row length {ne0} is not a multiple of {info.Name}'s block size {info.BlockSize}", nameof(shape));
        var elements = hasZero ? 0 : (ulong)product;
        var bytes = (UInt128)(elements / (ulong)info.BlockSize) * (ulong)info.BlockBytes;
        if (bytes > long.MaxValue)
            throw new ArgumentException($"tensor '{name}' byte size overflows int64", nameof(shape));
        return (long)bytes;
    }

    private void Add(string name, ReadOnlySpan<long> shape, GgmlType type, long byteSize, Action<Stream> writeData)
    {
        _tensorIndex.Add(name, _tensors.Count);
        _tensors.Add(new PlannedTensor(name, shape.ToArray(), type, byteSize, writeData));
    }

    private static void CopyExactly(string name, Stream source, Stream destination, long byteSize)
    {
        var buffer = new byte[(int)Math.Min(byteSize, 1 << 20)];
        for (var left = byteSize; left > 0;)
        {
            var n = source.Read(buffer, 0, (int)Math.Min(left, buffer.Length));
            if (n == 0)
                throw new EndOfStreamException($"the data stream for tensor '{name}' ended {left} bytes early");
            destination.Write(buffer, 0, n);
            left -= n;
        }
    }

    private static unsafe void CopyFromMap(GgufFile source, GgufTensorInfo tensor, Stream destination)
    {
        var p = source.GetTensorPointer(tensor);
        const int chunk = 1 << 24;
        for (long done = 0; done < tensor.ByteSize; done += chunk)
            destination.Write(new ReadOnlySpan<byte>(p + done, (int)Math.Min(chunk, tensor.ByteSize - done)));
    }

    private sealed record PlannedTensor(string Name, long[] Shape, GgmlType Type, long ByteSize, Action<Stream> WriteData);

    /// <summary>
    /// A write-only pass-through that counts bytes (the header needs its length for padding, and needs no
    /// seekable destination) and, for tensor data, refuses to go past the declared size.
    /// </summary>
    private sealed class CountingStream(Stream inner, string? tensorName = null, long limit = long.MaxValue) : Stream
    {
        public long Count { get; private set; }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position
        {
            get => Count;
            set => throw new NotSupportedException();
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (buffer.Length > limit - Count)
                throw new InvalidOperationException($"tensor '{tensorName}' wrote more than its {limit} bytes");
            inner.Write(buffer);
            Count += buffer.Length;
        }

        public override void WriteByte(byte value) => Write([value]);

        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
