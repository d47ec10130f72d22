use sea_orm::entity::prelude::*;

/// Something a contact did; `(workspace_id, idempotency_key)` is unique when a key is given.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub workspace_id: i64,
    pub contact_id: i64,
    pub kind: String,
    pub occurred_at: i64,
    #[sea_orm(column_type = "Double", nullable)]
    pub amount: Option<f64>,
    pub currency: Option<String>,
    #[sea_orm(column_type = "JsonBinary")]
    pub properties: Json,
    pub idempotency_key: Option<String>,
    pub received_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::contact::Entity",
        from = "Column::ContactId",
        to = "super::contact::Column::Id",
        on_delete = "Cascade"
    )]
    Contact,
}

impl Related<super::contact::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Contact.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
