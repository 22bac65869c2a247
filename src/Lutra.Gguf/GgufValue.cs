using System.Text;

namespace Lutra.Gguf;

/// <summary>GGUF metadata value types (gguf.h), by id.</summary>
public enum GgufValueType : uint
{
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
}

/// <summary>
/// A GGUF string: raw bytes as stored (usually UTF-8, but token strings may be arbitrary bytes), so a
/// file can be written back byte for byte.
/// </summary>
public readonly struct GgufString : IEquatable<GgufString>
{
    private readonly byte[]? _bytes;

    public GgufString(byte[] bytes) => _bytes = bytes;

    public GgufString(string value) => _bytes = Encoding.UTF8.GetBytes(value);

    public ReadOnlySpan<byte> Bytes => _bytes;

    public int Length => _bytes?.Length ?? 0;

    public override string ToString() => _bytes is null ? string.Empty : Encoding.UTF8.GetString(_bytes);

    public bool Equals(GgufString other) => Bytes.SequenceEqual(other.Bytes);

    public override bool Equals(object? obj) => obj is GgufString s && Equals(s);

    public override int GetHashCode()
    {
        var h = new HashCode();
        h.AddBytes(Bytes);
        return h.ToHashCode();
    }

    public static bool operator ==(GgufString left, GgufString right) => left.Equals(right);

    public static bool operator !=(GgufString left, GgufString right) => !left.Equals(right);
}

/// <summary>
/// One metadata value. <see cref="Value"/> holds, by <see cref="Type"/>: the CLR scalar (byte, sbyte, ushort,
/// short, uint, int, float, bool, ulong, long, double), a <see cref="GgufString"/>, or for arrays a typed CLR
/// array of the element type (byte[] … double[], <see cref="GgufString"/>[], or <see cref="GgufValue"/>[] for
/// arrays of arrays, each element itself of type <see cref="GgufValueType.Array"/>).
/// </summary>
public sealed class GgufValue
{
    public GgufValue(GgufValueType type, object value, GgufValueType elementType = GgufValueType.UInt8)
    {
        Type = type;
        Value = value;
        ElementType = elementType;
    }

    public GgufValueType Type { get; }

    /// <summary>For arrays: the type of the elements.</summary>
    public GgufValueType ElementType { get; }

    public object Value { get; }

    public bool IsArray => Type == GgufValueType.Array;

    /// <summary>Number of elements of an array value.</summary>
    public int ArrayLength => IsArray ? ((Array)Value).Length : throw new InvalidOperationException("not an array");

    public static GgufValue From(string s) => new(GgufValueType.String, new GgufString(s));
    public static GgufValue From(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue From(int v) => new(GgufValueType.Int32, v);
    public static GgufValue From(float v) => new(GgufValueType.Float32, v);
    public static GgufValue From(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue From(ulong v) => new(GgufValueType.UInt64, v);
    public static GgufValue From(long v) => new(GgufValueType.Int64, v);
    public static GgufValue From(double v) => new(GgufValueType.Float64, v);
    public static GgufValue FromArray(string[] items) =>
        new(GgufValueType.Array, items.Select(s => new GgufString(s)).ToArray(), GgufValueType.String);
    public static GgufValue FromArray(float[] items) => new(GgufValueType.Array, items, GgufValueType.Float32);
    public static GgufValue FromArray(int[] items) => new(GgufValueType.Array, items, GgufValueType.Int32);

    /// <summary>Size in bytes of one fixed-size value of this type, or 0 for string and array.</summary>
    public static int ScalarSize(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
        _ => 0,
    };

    /// <summary>The type as gguf spells it, e.g. "UINT32" or "ARRAY[STRING]".</summary>
    public string TypeName => IsArray ? $"ARRAY[{TypeNameOf(ElementType)}]" : TypeNameOf(Type);

    /// <summary>gguf's name of a value type, e.g. "FLOAT32"; unknown ids print as "type 42".</summary>
    public static string TypeNameOf(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 => "UINT8",
        GgufValueType.Int8 => "INT8",
        GgufValueType.UInt16 => "UINT16",
        GgufValueType.Int16 => "INT16",
        GgufValueType.UInt32 => "UINT32",
        GgufValueType.Int32 => "INT32",
        GgufValueType.Float32 => "FLOAT32",
        GgufValueType.Bool => "BOOL",
        GgufValueType.String => "STRING",
        GgufValueType.Array => "ARRAY",
        GgufValueType.UInt64 => "UINT64",
        GgufValueType.Int64 => "INT64",
        GgufValueType.Float64 => "FLOAT64",
        _ => $"type {(uint)type}",
    };

    public override string ToString() => Value switch
    {
        GgufString s => s.ToString(),
        Array a => $"[{ElementType} × {a.Length}]",
        _ => Convert.ToString(Value, System.Globalization.CultureInfo.InvariantCulture) ?? string.Empty,
    };
}
